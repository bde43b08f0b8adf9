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
time operation that also resets the young generation's count), so
collections only walk what was allocated since; and sooner whenever the
young generation is half full. Once a second alone was not enough in a
storm: 4,500 sign-ins a second leave ~300,000 tracked objects, so the young
generation (50,000) filled every ~130 ms and each collection walked the new
connections (8-20 ms), and the middle generation walked up to five such
batches at once (up to 140 ms). gc.callbacks over `bench/run --servers
ours`: 0.61 s of collections, 0.044 s with the check (sign-ins/s 4,425 ->
5,137). The check is a look at a counter 20 times a second. Freezing every
50 ms whatever the load did the same for the storm but also froze the
cyclic garbage of aborted connections until the next reclaim
(tests/end_to_end/test_leaks.py, 4,000 connections: RSS +8.5-8.8 MB against +8.4-8.5 MB,
2 runs of 3 over its bound; with the check +7.5-8.0 MB); at ordinary rates the young
generation never gets half full between the once-a-second freezes. Frozen
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


# How often the young generation's count is looked at.
CHECK_SECONDS = 0.05


def run(freeze_every: float, reclaim_every: float, stop: threading.Event) -> None:
    """Freeze survivors every ``freeze_every`` seconds, or as soon as the
    young generation is half full; every ``reclaim_every`` seconds collect
    everything in full first."""
    now = time.monotonic()
    next_reclaim = now + reclaim_every
    next_freeze = now + freeze_every
    while not stop.wait(min(CHECK_SECONDS, freeze_every)):
        now = time.monotonic()
        if now < next_freeze and gc.get_count()[0] < gc.get_threshold()[0] // 2:
            continue
        if now >= next_reclaim:
            gc.unfreeze()
            gc.collect()
            next_reclaim = time.monotonic() + reclaim_every
        gc.freeze()
        next_freeze = now + freeze_every


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
