"""Who is online: name claims, look-ups and this process's live sessions.

A claim maps a username to the channel name of the one connection that holds
it. Looking a target up happens on every relayed frame, so it never touches
the database. With one process (the in-memory channel layer) the claims live
in its memory; when several instances share Redis they live in Redis
(``redis_presence``), so a name is live on at most one connection anywhere.
"""

from __future__ import annotations

import enum
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from hashlib import sha256

from django.conf import settings


@dataclass(frozen=True, slots=True)
class Credential:
    """What a sign-in proved: an account, or knowledge of a guest password."""

    account_id: int | None = None
    guest_digest: bytes | None = None

    @property
    def is_guest(self) -> bool:
        return self.account_id is None


def guest_credential(password: str | None) -> Credential:
    # Keyed so that the registry never holds anything a password can be
    # recovered from cheaply; guest claims live only as long as a session.
    key = settings.SECRET_KEY.encode("utf-8")
    digest = hmac.new(key, (password or "").encode("utf-8"), sha256).digest()
    return Credential(guest_digest=digest)


def may_replace(holder: Credential, newcomer: Credential) -> bool:
    """Whether ``newcomer`` may take over a name ``holder`` holds."""
    if newcomer.account_id is not None:
        # The account password was verified; an account owns its name.
        return True
    if holder.guest_digest is None or newcomer.guest_digest is None:
        return False
    return hmac.compare_digest(holder.guest_digest, newcomer.guest_digest)


@dataclass(slots=True)
class LocalSession:
    """A signed-in connection served by this process."""

    username: str
    channel_name: str
    credential: Credential
    client_address: str
    user_agent: str
    connected_at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class Claimed:
    # The channel of the session this claim took over, if any.
    replaced_channel: str | None


@dataclass(frozen=True, slots=True)
class Taken:
    pass


class ReclaimOutcome(enum.Enum):
    """What became of a session after Redis lost its claim."""

    KEPT = "kept"  # claimed again
    TAKEN = "taken"  # another sign-in took the name meanwhile
    ABANDONED = "abandoned"  # could not be claimed again in time


class LocalRegistry:
    """Name claims held in this process's memory (one process serves all)."""

    def __init__(self) -> None:
        self._by_name: dict[str, LocalSession] = {}
        self._by_channel: dict[str, LocalSession] = {}

    async def claim(self, session: LocalSession) -> Claimed | Taken:
        # No await between the check and the update: claims are atomic
        # within the event loop.
        holder = self._by_name.get(session.username)
        if holder is not None and not may_replace(
            holder.credential, session.credential
        ):
            return Taken()
        if holder is not None:
            self._by_channel.pop(holder.channel_name, None)
        self._by_name[session.username] = session
        self._by_channel[session.channel_name] = session
        return Claimed(replaced_channel=holder.channel_name if holder else None)

    async def release(self, *, username: str, channel_name: str) -> bool:
        """Drop a claim if ``channel_name`` still holds it."""
        self._by_channel.pop(channel_name, None)
        holder = self._by_name.get(username)
        if holder is None or holder.channel_name != channel_name:
            return False
        del self._by_name[username]
        return True

    async def lookup(self, username: str) -> str | None:
        """Return the channel name of the connection holding ``username``."""
        holder = self._by_name.get(username)
        return holder.channel_name if holder else None

    async def release_all_local(self) -> None:
        self.clear()

    def start(
        self, on_reclaim: Callable[[LocalSession, ReclaimOutcome], Awaitable[None]]
    ) -> None:
        """Nothing runs in the background for claims held in memory."""

    def local_sessions(self) -> list[LocalSession]:
        return list(self._by_channel.values())

    def clear(self) -> None:
        self._by_name.clear()
        self._by_channel.clear()

    def __len__(self) -> int:
        return len(self._by_channel)


def make_registry():
    """The registry for this configuration: Redis when instances share one."""
    if settings.REDIS.enabled:
        from signaling.presence.redis_presence import RedisRegistry

        return RedisRegistry(
            settings.REDIS,
            ttl_seconds=settings.SIGNALING_PRESENCE_TTL_SECONDS,
            recovery_seconds=settings.SIGNALING_PRESENCE_RECOVERY_SECONDS,
        )
    return LocalRegistry()


registry = make_registry()
