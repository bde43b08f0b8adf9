"""Graceful stop under Daphne (SIGTERM, SIGINT).

Daphne cancels every application when its Twisted reactor shuts down. A hook
that runs before that marks the process as stopping, so consumers tell their
clients to reconnect elsewhere instead of vanishing, and removes this
process's name claims and session rows in bulk at once.
"""

from __future__ import annotations

import asyncio
import logging
import sys

logger = logging.getLogger(__name__)

stopping = False


def install() -> None:
    """Register the stop hook with Daphne's reactor, if running under Daphne."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:
        # Another ASGI server: it closes sockets its own way.
        return
    reactor.addSystemEventTrigger("before", "shutdown", _before_shutdown)


def _before_shutdown():
    from twisted.internet.defer import Deferred

    global stopping
    stopping = True
    logger.info("stopping: telling clients to reconnect elsewhere")
    return Deferred.fromFuture(asyncio.ensure_future(_remove_this_process()))


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
