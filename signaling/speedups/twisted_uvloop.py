"""Run Daphne's Twisted reactor on uvloop instead of asyncio's own loop.

Upstream: Twisted 26.10.0 (``twisted/internet/asyncioreactor.py``); uvloop
is used through its public API.
Touches: ``AsyncioSelectorReactor._asyncioEventloop``, ``_readers``,
``_writers``, ``_timerHandle``, ``_scheduledAt``, ``_reschedule``, and the
old loop's ``_default_executor``.

Daphne drives Twisted through its asyncio reactor, on a loop it creates
with ``asyncio.new_event_loop()`` when ``daphne.server`` is imported,
before the application is loaded. That loop is pure Python: every loop
turn, every callback, timer and reader registration runs Python code, and
a signaling server does little per event besides. uvloop is the same
asyncio interface implemented in C on libuv; Twisted's asyncio reactor uses
only that interface (add_reader/add_writer, call_soon, call_at, run_forever,
stop). Here the reactor is moved to a uvloop loop once the application is
imported and before Daphne starts it: what was registered on the old loop
(the reactor's waker, its timer) is registered again on the new one.

``SIGNALING_EVENT_LOOP=asyncio`` keeps asyncio's loop. Nothing changes under
other ASGI servers (they choose their own loop), when uvloop is not
installed (Windows), or when the loop is already running.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)

UPSTREAM = {"twisted": "26.10.0"}
TOUCHES = (
    "twisted.internet.asyncioreactor.AsyncioSelectorReactor._asyncioEventloop",
    "twisted.internet.asyncioreactor.AsyncioSelectorReactor._timerHandle",
    "twisted.internet.asyncioreactor.AsyncioSelectorReactor._scheduledAt",
    "twisted.internet.asyncioreactor.AsyncioSelectorReactor._reschedule",
    "asyncio.BaseEventLoop._default_executor",
)


def apply(choice: str | None = None) -> bool:
    """Move the reactor to uvloop if ``choice`` (default:
    settings.SIGNALING_EVENT_LOOP) asks for it and it can be done; True when
    it was moved."""
    if choice is None:
        from django.conf import settings

        choice = settings.SIGNALING_EVENT_LOOP
    if choice != "uvloop":
        return False
    reactor = sys.modules.get("twisted.internet.reactor")
    asyncioreactor = sys.modules.get("twisted.internet.asyncioreactor")
    if reactor is None or asyncioreactor is None:
        return False
    if not isinstance(reactor, asyncioreactor.AsyncioSelectorReactor):
        return False
    try:
        import uvloop
    except ImportError:
        logger.warning("uvloop is not installed; running on asyncio's event loop")
        return False
    old = reactor._asyncioEventloop
    if isinstance(old, uvloop.Loop) or old.is_running() or reactor.running:
        return False
    _move(reactor, old, uvloop.new_event_loop())
    logger.info("event loop: uvloop %s", uvloop.__version__)
    return True


def _move(reactor, old, new) -> None:
    readers, writers = list(reactor._readers), list(reactor._writers)
    for selectable in readers:
        reactor.removeReader(selectable)
    for selectable in writers:
        reactor.removeWriter(selectable)
    if reactor._timerHandle is not None:
        reactor._timerHandle.cancel()
        reactor._timerHandle = None
    reactor._scheduledAt = None
    # Daphne gives its loop a thread pool when ASGI_THREADS is set; it
    # moves too (closing the old loop would shut it down).
    executor = getattr(old, "_default_executor", None)
    if executor is not None:
        old._default_executor = None
        new.set_default_executor(executor)
    reactor._asyncioEventloop = new
    for selectable in readers:
        reactor.addReader(selectable)
    for selectable in writers:
        reactor.addWriter(selectable)
    # Timers already scheduled with callLater, on the new loop's clock.
    reactor._reschedule()
    old.close()
