"""Keep long-lived objects out of the garbage collector's way.

Upstream: CPython 3.11's gc module (interpreter globals: the collection
thresholds and the permanent generation).
Touches: ``gc.set_threshold``, ``gc.freeze``/``gc.unfreeze`` (from a
background thread), and the young generation's count (``gc.get_count``).

Python's cyclic collector walks every tracked object of a generation each
time it collects it. Each connection keeps dozens of such objects for its
whole life, so in a sign-in storm every new connection was walked again and
again by the middle generation, and once the storm was over a full
collection walked every connection at once, a pause landing in whatever
ran next.

At start everything loaded so far (Django, the app) is frozen, and the
young generation is collected less often (each connection allocates many
small long-lived objects); the middle generation every 5 young collections
rather than 20, so that each of its collections walks fewer new
connections.

Then a background thread moves everything that has survived to the
collector's permanent generation once a second (``gc.freeze``, a constant
time operation that also resets the young generation's count), so
collections only walk what was allocated since; and sooner whenever the
young generation is half full, because in a storm it fills several times a
second. Freezing on a fixed short period whatever the load would also
freeze the cyclic garbage of aborted connections until the next reclaim;
at ordinary rates the young generation never gets half full between the
once-a-second freezes. Each freeze first collects
the young and middle generations, which hold only what was allocated since
the last freeze: cyclic garbage made since (every HTTP request leaves some:
the thread Django runs its sync parts in, with its database connection) is
freed instead of frozen, not kept until the next reclaim (figures in
docs/long-runs.md). Frozen
objects are still freed by reference counting, which is how closed
connections go (they leave no reference cycles). What freezing would keep
is a reference cycle that forms among frozen objects later on (an HTTP
request in flight at the moment of a freeze, say): so once an interval (an
hour by default) everything is thawed and collected in full, then frozen
again: one full pause an hour instead of one each time the heap grows by a
quarter.
"""

from __future__ import annotations

import gc
import threading
import time

from django.conf import settings

UPSTREAM = {"python": "3.11"}
TOUCHES = (
    "gc.set_threshold",
    "gc.freeze",
    "gc.unfreeze",
    "gc.get_count",
    "gc.collect",
)

# Young, middle, old: see the module docstring.
THRESHOLDS = (50_000, 5, 100)

_started: threading.Thread | None = None


def apply() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    start(settings.SIGNALING_GC_FREEZE_SECONDS, settings.SIGNALING_GC_RECLAIM_SECONDS)


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
        else:
            # What became garbage since the last freeze must not be frozen
            # with the survivors: collect the young generations first.
            gc.collect(1)
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
