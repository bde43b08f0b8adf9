"""Graceful stop under Daphne (SIGTERM, SIGINT).

When Twisted's reactor shuts down it drops every connection without a close
frame. (Daphne's own hook meant to cancel applications first fails with a
KeyError when an upgraded HTTP request is still listed, so nothing can count
on it.) A hook that runs before that tells every open connection of this
process to reconnect elsewhere (a Reconnect frame, close code 4003), and
removes this process's name claims and session rows in bulk at once; the
reactor waits for both.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref

logger = logging.getLogger(__name__)

# Connections open in this process, to tell when it stops.
_open_consumers: weakref.WeakSet = weakref.WeakSet()


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


def install() -> None:
    """Register the stop hook with Daphne's reactor, if running under Daphne."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:
        # Another ASGI server: it closes sockets its own way.
        return
    reactor.addSystemEventTrigger("before", "shutdown", _before_shutdown)


def _before_shutdown():
    from twisted.internet.defer import Deferred

    logger.info("stopping: telling clients to reconnect elsewhere")
    consumers = list(_open_consumers)
    work = asyncio.gather(
        _remove_this_process(),
        *(consumer.server_stopping() for consumer in consumers),
        return_exceptions=True,
    )
    return Deferred.fromFuture(work)


async def _remove_this_process() -> None:
    from .live_sessions import live_sessions_remove_process
    from .presence import registry

    try:
        await registry.release_all_local()
    except Exception:
        logger.warning("could not release name claims while stopping", exc_info=True)
    try:
        await live_sessions_remove_process()
    except Exception:
        logger.warning("could not remove session rows while stopping", exc_info=True)
