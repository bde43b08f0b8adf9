"""The collector thread: survivors are frozen, and a reference cycle that
forms among frozen objects is still collected at the next reclaim."""

import gc
import threading
import time
import weakref

from signaling import collector


class Node:
    pass


def test_survivors_are_frozen_and_cycles_among_them_reclaimed_later():
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(0.05, 0.5, stop), daemon=True)
    try:
        first, second = Node(), Node()
        first.other, second.other = second, first
        gone = threading.Event()
        probe = weakref.ref(first, lambda _ref: gone.set())
        thread.start()
        time.sleep(0.2)
        assert gc.get_freeze_count() > 0
        # Unreachable now, but frozen: ordinary collections skip it ...
        del first, second
        gc.collect()
        assert probe() is not None
        # ... until the reclaim collects everything in full.
        assert gone.wait(3)
    finally:
        stop.set()
        thread.join(2)
        gc.unfreeze()


def test_a_zero_interval_starts_nothing():
    assert collector.start(0, 3600) is None
