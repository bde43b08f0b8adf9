"""The collector thread: survivors are frozen, and a reference cycle that
forms among frozen objects is still collected at the next reclaim."""

import gc
import threading
import time
import weakref

from signaling.speedups import cpython_gc as collector


class Node:
    pass


def wait_for(condition, timeout: float = 5) -> bool:
    """Poll until ``condition()`` holds; False if it never did in time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_survivors_are_frozen_and_cycles_among_them_reclaimed_later():
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(0.05, 0.5, stop), daemon=True)
    try:
        first, second = Node(), Node()
        first.other, second.other = second, first
        gone = threading.Event()
        probe = weakref.ref(first, lambda _ref: gone.set())
        before = gc.get_freeze_count()
        thread.start()
        # A freeze takes in every tracked object, the two nodes among them.
        assert wait_for(lambda: gc.get_freeze_count() > before)
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


def test_a_half_full_young_generation_is_frozen_before_the_second_is_up():
    stop = threading.Event()
    threshold = gc.get_threshold()
    gc.set_threshold(10_000, *threshold[1:])
    # Once a minute by the clock: only the young generation's count can
    # make it freeze within the test.
    thread = threading.Thread(target=collector.run, args=(60, 3600, stop), daemon=True)
    try:
        gc.freeze()
        thread.start()
        time.sleep(0.2)
        quiet = gc.get_freeze_count()
        survivors = [[] for _ in range(8_000)]
        assert wait_for(lambda: gc.get_freeze_count() >= quiet + len(survivors))
    finally:
        stop.set()
        thread.join(2)
        gc.set_threshold(*threshold)
        gc.unfreeze()
