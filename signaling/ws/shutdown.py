"""Graceful stop under Daphne: drain on SIGTERM, then stop.

SIGTERM starts a drain instead of stopping at once. From then on readiness
answers 503, new connections and sign-ins are told to reconnect elsewhere,
and the open connections are told (a Reconnect frame, close code 4003) in
batches spread over ``SIGNALING_DRAIN_SECONDS``, so that the instances
taking over are not hit by every client in the same second. Each client's
name claim is released just before it is told, so it can sign in again at
once elsewhere, and a relay to it is never delivered to a connection that is
closing. When every connection has been told the reactor stops.

When Twisted's reactor shuts down it drops every connection without a close
frame, and Daphne's own hook cancels every application first. (That hook
fails with a KeyError when an upgraded HTTP request is still listed, so
nothing can count on it either way.) A hook that runs before both tells
whoever is still connected (a second SIGTERM, SIGINT, or a connection that
arrived at the last moment), and removes this process's name claims and
session rows in bulk; the reactor waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import sys
import weakref

from django.conf import settings

logger = logging.getLogger(__name__)

# Batches of a drain are this far apart.
DRAIN_TICK_SECONDS = 0.1
# A drain tells at least this many clients a second: a small instance is
# done in moments, and only a large one uses the whole window.
DRAIN_MIN_PER_SECOND = 100

# Connections open in this process and not yet told to leave.
_open_consumers: weakref.WeakSet = weakref.WeakSet()
_draining = False


def remember(consumer) -> None:
    _open_consumers.add(consumer)


def forget(consumer) -> None:
    _open_consumers.discard(consumer)


def open_consumer(channel_name: str):
    """The open connection of this process on ``channel_name``, or None."""
    for consumer in list(_open_consumers):
        if getattr(consumer, "channel_name", None) == channel_name:
            return consumer
    return None


def draining() -> bool:
    """True from the stop signal until exit: clients belong elsewhere."""
    return _draining


def drain_batch_size(untold: int, seconds_left: float) -> int:
    """How many of ``untold`` connections to tell in this tick, for the rest
    to be spread evenly over what is left of the window."""
    if untold <= 0:
        return 0
    ticks_left = seconds_left / DRAIN_TICK_SECONDS
    if ticks_left <= 1:
        return untold
    floor = math.ceil(DRAIN_MIN_PER_SECOND * DRAIN_TICK_SECONDS)
    return min(untold, max(floor, math.ceil(untold / ticks_left)))


def install() -> None:
    """Take over SIGTERM and register the stop hook, if running under Daphne."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:
        # Another ASGI server: it closes sockets its own way.
        return
    reactor.addSystemEventTrigger("before", "shutdown", _before_shutdown)
    # After the reactor installed its own handlers, which stop at once.
    reactor.callWhenRunning(_handle_sigterm, reactor)


def _handle_sigterm(reactor) -> None:
    def on_sigterm(signum, frame):
        reactor.callFromThread(_start_drain, reactor)

    signal.signal(signal.SIGTERM, on_sigterm)


def _start_drain(reactor) -> None:
    global _draining
    if _draining:
        # A second SIGTERM: stop now; the hook tells whoever is left.
        _stop(reactor)
        return
    _draining = True
    drain = asyncio.ensure_future(_drain(settings.SIGNALING_DRAIN_SECONDS))
    drain.add_done_callback(lambda _: _stop(reactor))


def _stop(reactor) -> None:
    from twisted.internet.error import ReactorNotRunning

    try:
        reactor.stop()
    except ReactorNotRunning:
        pass  # already stopping


async def _drain(seconds: float) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + seconds
    logger.info(
        "draining: telling %d clients to reconnect elsewhere within %.0fs",
        len(_open_consumers),
        seconds,
    )
    telling = []
    told = 0
    try:
        while untold := list(_open_consumers):
            batch = untold[: drain_batch_size(len(untold), deadline - loop.time())]
            for consumer in batch:
                forget(consumer)
                telling.append(asyncio.ensure_future(consumer.server_stopping()))
            told += len(batch)
            await asyncio.sleep(DRAIN_TICK_SECONDS)
        await asyncio.gather(*telling, return_exceptions=True)
    except Exception:
        logger.exception("drain failed; stopping now")
    logger.info("drained: %d clients told in %.1fs", told, loop.time() - started)


def _before_shutdown():
    from twisted.internet.defer import Deferred

    global _draining
    _draining = True
    consumers = list(_open_consumers)
    _open_consumers.clear()
    logger.info("stopping: telling %d clients to reconnect elsewhere", len(consumers))
    work = asyncio.gather(
        _remove_this_process(),
        *(consumer.server_stopping(release=False) for consumer in consumers),
        return_exceptions=True,
    )
    return Deferred.fromFuture(work)


async def _remove_this_process() -> None:
    from signaling.presence.live_sessions import (
        heartbeat_stop,
        live_sessions_remove_process,
    )
    from signaling.presence.registry import registry

    try:
        await registry.release_all_local()
    except Exception:
        logger.warning("could not release name claims while stopping", exc_info=True)
    try:
        # Stopped first, or a last heartbeat could list this process again.
        await heartbeat_stop()
        await live_sessions_remove_process()
    except Exception:
        logger.warning("could not remove session rows while stopping", exc_info=True)
