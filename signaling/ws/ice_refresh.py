"""One connection's ICE servers, pushed again before their credentials expire.

With a TURN secret every issue mints credentials valid for
``SIGNALING_TURN_CREDENTIAL_TTL_SECONDS``; a timer pushes fresh ones when 80 %
of that has passed. The timer is an event-loop ``TimerHandle`` (a few hundred
bytes, no task or coroutine while it waits), so 15,000 idle connections cost
a heap of 15,000 handles and nothing per loop iteration; a task exists only
for the moment a push is being sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from signaling.core.ice import IceConfig, IceServers, ice_servers_for

logger = logging.getLogger(__name__)


@functools.cache
def ice_config() -> IceConfig:
    """The deployment's ICE servers (validated at start by the app config).

    Built once, not on every sign-in; a settings change (tests) rebuilds it.
    """
    return IceConfig.from_settings(settings)


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs) -> None:
    if setting.startswith("SIGNALING_"):
        ice_config.cache_clear()


class SessionIceServers:
    """Issues a connection's ICE servers and keeps them fresh while it lives."""

    def __init__(self, push: Callable[[IceServers], Awaitable[None]]) -> None:
        # Sends an IceServers frame to the client. Held weakly: the push is
        # a method of the consumer that holds this object, and a strong
        # reference would make a cycle only the garbage collector frees.
        self._push = weakref.WeakMethod(push) if hasattr(push, "__self__") else lambda: push
        self._username: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def issue(self, username: str) -> IceServers:
        """Return fresh ICE servers for ``username`` and restart the timer."""
        issued = ice_servers_for(ice_config(), username=username, now=time.time())
        self._username = username
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if issued.refresh_in is not None:
            self._timer = asyncio.get_running_loop().call_later(
                issued.refresh_in, self._due
            )
        return issued

    def stop(self) -> None:
        """Stop pushing (the session ended)."""
        self._username = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        self._timer = None
        if self._username is not None:
            self._task = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        username = self._username
        if username is None:
            return
        push = self._push()
        if push is None:
            return
        try:
            await push(self.issue(username))
        except Exception:
            # The socket is gone without a disconnect: stop, do not retry.
            self.stop()
            logger.warning("could not push fresh ICE servers username=%s", username)
