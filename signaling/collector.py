"""Keep long-lived objects out of the garbage collector's way.

Python's cyclic collector walks every tracked object of a generation each
time it collects it. Each connection keeps ~66 such objects for its whole
life, so in a sign-in storm every new connection was walked again by the
middle generation (130-185 ms pauses, ~11 % of the storm) and once the storm
was over a full collection walked all 15 000 connections (~185 ms, landing
in whatever ran next): gc.callbacks over a whole benchmark run, 1.33 s of
collections; with this, 0.47 s.

Here a background thread moves everything that has survived to the
collector's permanent generation once a second (``gc.freeze``, a constant
time operation), so collections only walk what was allocated since. Frozen
objects are still freed by reference counting, which is how closed
connections go (they leave no reference cycles: 0 objects found by
gc.DEBUG_SAVEALL after sign-in, relay and handshake workloads). What
freezing would keep forever is a reference cycle that forms among frozen
objects later on (an HTTP request in flight at the moment of a freeze,
say): so once an interval (an hour by default) everything is thawed and
collected in full, then frozen again: one full pause an hour instead of one
each time the heap grows by a quarter.
"""

from __future__ import annotations

import gc
import threading
import time

_started: threading.Thread | None = None


def run(freeze_every: float, reclaim_every: float, stop: threading.Event) -> None:
    """Freeze survivors every ``freeze_every`` seconds; every
    ``reclaim_every`` seconds collect everything in full first."""
    next_reclaim = time.monotonic() + reclaim_every
    while not stop.wait(freeze_every):
        if time.monotonic() >= next_reclaim:
            gc.unfreeze()
            gc.collect()
            next_reclaim = time.monotonic() + reclaim_every
        gc.freeze()


def start(freeze_every: float, reclaim_every: float) -> threading.Thread | None:
    """Start the freezing thread once per process (0 turns it off)."""
    global _started
    if freeze_every <= 0 or _started is not None:
        return None
    _started = threading.Thread(
        target=run,
        args=(freeze_every, max(reclaim_every, freeze_every), threading.Event()),
        name="signaling-gc-freeze",
        daemon=True,
    )
    _started.start()
    return _started
