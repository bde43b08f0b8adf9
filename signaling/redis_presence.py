"""Name claims shared by every instance through Redis.

Each claim is a hash ``signaling:user:<name>`` holding the channel and the
process that serve the name, and what the sign-in proved. Claims are checked
and written by Lua scripts, so two instances can never both win a name.

A process proves it is alive by refreshing ``signaling:process:<name>`` with
a short TTL. A claim whose process key is gone (the process was killed, or
stopped for longer than the TTL) counts as free, and a look-up deletes it: a
relay to a user of a dead instance gets an Error within the TTL, never
silence. A process that finds its own key gone (Redis restarted, or the
process was frozen) claims its sessions again; those another instance took
in the meantime are closed as replaced.

Relays sent to a user of a process in the moments between its death and its
key expiring land in the dead process's channel-layer queue. Every live
process watches for dead ones and bounces those relays back to their senders
as Error frames, so nothing sent is lost without the sender being told.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from redis.exceptions import RedisError

from .presence import Claimed, Credential, LocalSession, Taken
from .process import PROCESS_NAME

logger = logging.getLogger(__name__)

USER_PREFIX = "signaling:user:"
PROCESS_PREFIX = "signaling:process:"
# process name -> the channel-layer queue key its connections receive from.
PROCESS_QUEUES = "signaling:process-queues"
# Long enough to ride out a paused Redis (CLIENT PAUSE), short enough that a
# black-holed Redis does not hang a relay forever.
SOCKET_TIMEOUT_SECONDS = 10
POOL_SIZE = 64

# KEYS: user key. ARGV: channel, process, digest, is_account, process prefix,
# mode ("claim" may take over per the credential rules; "reclaim" only takes
# a free name or keeps its own).
CLAIM = """
local holder = redis.call('HMGET', KEYS[1], 'channel', 'process', 'digest', 'account')
if holder[1] and holder[1] ~= ARGV[1] then
  local alive = redis.call('EXISTS', ARGV[5] .. holder[2]) == 1
  if alive then
    if ARGV[6] == 'reclaim' then
      return {0, holder[1]}
    end
    if ARGV[4] ~= '1' and (holder[4] == '1' or holder[3] ~= ARGV[3]) then
      return {0, holder[1]}
    end
  end
end
redis.call('HSET', KEYS[1], 'channel', ARGV[1], 'process', ARGV[2],
           'digest', ARGV[3], 'account', ARGV[4])
if holder[1] and holder[1] ~= ARGV[1] then
  return {1, holder[1]}
end
return {1, false}
"""

# KEYS: user key. ARGV: channel.
RELEASE = """
if redis.call('HGET', KEYS[1], 'channel') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS: user key. ARGV: process prefix.
LOOKUP = """
local holder = redis.call('HMGET', KEYS[1], 'channel', 'process')
if not holder[1] then
  return false
end
if redis.call('EXISTS', ARGV[1] .. holder[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return false
end
return holder[1]
"""


def _user_key(username: str) -> bytes:
    return (USER_PREFIX + username).encode("utf-8")


def _credential_args(credential: Credential) -> tuple[bytes, str]:
    if credential.account_id is not None:
        return b"", "1"
    return credential.guest_digest or b"", "0"


class _Connection(NamedTuple):
    client: aioredis.Redis
    claim: object
    release: object
    lookup: object


# Called with a session this process re-claimed (True) or lost (False).
OnReclaim = Callable[[LocalSession, bool], Awaitable[None]]


class RedisRegistry:
    """Claims in Redis, plus the sessions this process serves."""

    def __init__(self, url: str, *, ttl_seconds: float) -> None:
        self.url = url
        self.ttl_ms = int(ttl_seconds * 1000)
        self.process_key = PROCESS_PREFIX + PROCESS_NAME
        self._local: dict[str, LocalSession] = {}
        # One client per event loop: connections cannot cross loops.
        self._connections: dict[asyncio.AbstractEventLoop, _Connection] = {}
        self._keepers: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}
        self._alive: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        self._known_queues: dict[bytes, bytes] = {}

    def _redis(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = self._connections.get(loop)
        if connection is None:
            # A blocking pool: a burst of sign-ins waits for a connection
            # instead of failing with "Too many connections" (redis-py's
            # default pool refuses the 101st concurrent command).
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=POOL_SIZE,
                timeout=SOCKET_TIMEOUT_SECONDS,
                socket_timeout=SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=2,
            )
            client = aioredis.Redis(connection_pool=pool)
            # Scripts reload themselves after a Redis restart (NOSCRIPT).
            connection = _Connection(
                client,
                client.register_script(CLAIM),
                client.register_script(RELEASE),
                client.register_script(LOOKUP),
            )
            self._connections[loop] = connection
        return connection

    async def _run_claim(self, session: LocalSession, mode: str) -> Claimed | Taken:
        digest, is_account = _credential_args(session.credential)
        won, previous = await self._redis().claim(
            keys=[_user_key(session.username)],
            args=[
                session.channel_name,
                PROCESS_NAME,
                digest,
                is_account,
                PROCESS_PREFIX,
                mode,
            ],
        )
        if not won:
            return Taken()
        self._local[session.channel_name] = session
        return Claimed(replaced_channel=previous.decode() if previous else None)

    async def claim(self, session: LocalSession) -> Claimed | Taken:
        # Until this process's key exists, others would treat its claims and
        # its queue as dead; wait (briefly) for the keeper's first beat.
        alive = self._alive.get(asyncio.get_running_loop())
        if alive is not None and not alive.is_set():
            try:
                await asyncio.wait_for(alive.wait(), SOCKET_TIMEOUT_SECONDS)
            except TimeoutError:
                raise RedisError("presence keeper has not reached Redis") from None
        await self._register_queue(session.channel_name)
        return await self._run_claim(session, "claim")

    async def release(self, *, username: str, channel_name: str) -> bool:
        self._local.pop(channel_name, None)
        released = await self._redis().release(keys=[_user_key(username)], args=[channel_name])
        return bool(released)

    async def lookup(self, username: str) -> str | None:
        channel = await self._redis().lookup(keys=[_user_key(username)], args=[PROCESS_PREFIX])
        return channel.decode() if channel else None

    async def release_all_local(self) -> None:
        """Release every claim of this process at once (graceful stop)."""
        sessions = list(self._local.values())
        self._local.clear()
        redis = self._redis()
        async with redis.client.pipeline(transaction=False) as pipe:
            for session in sessions:
                redis.release(
                    keys=[_user_key(session.username)],
                    args=[session.channel_name],
                    client=pipe,
                )
            pipe.delete(self.process_key)
            await pipe.execute()

    def start(self, on_reclaim: OnReclaim) -> None:
        """Start refreshing this process's liveness on the running loop."""
        loop = asyncio.get_running_loop()
        task = self._keepers.get(loop)
        if task is None or task.done():
            self._alive.setdefault(loop, asyncio.Event())
            self._keepers[loop] = loop.create_task(self._keep_alive(on_reclaim))

    async def _keep_alive(self, on_reclaim: OnReclaim) -> None:
        alive = self._alive[asyncio.get_running_loop()]
        interval = self.ttl_ms / 3000
        while True:
            try:
                client = self._redis().client
                refreshed = await client.set(self.process_key, 1, px=self.ttl_ms, xx=True)
                if not refreshed:
                    await client.set(self.process_key, 1, px=self.ttl_ms)
                    self._queue_registered = False
                    await self._reclaim(on_reclaim)
                alive.set()
                await self._bounce_for_dead_processes()
            except (RedisError, OSError):
                logger.warning("presence keep-alive cannot reach Redis")
            await asyncio.sleep(interval)

    async def _register_queue(self, channel_name: str) -> None:
        if getattr(self, "_queue_registered", False):
            return
        layer = get_channel_layer()
        queue_key = getattr(layer, "prefix", "") + layer.non_local_name(channel_name)
        await self._redis().client.hset(PROCESS_QUEUES, PROCESS_NAME, queue_key)
        self._queue_registered = True

    async def _bounce_for_dead_processes(self) -> None:
        client = self._redis().client
        queues = await client.hgetall(PROCESS_QUEUES)
        # Remembered from the last round too: another process may already
        # have removed a dead one from the hash before this one looked.
        known = {**self._known_queues, **queues}
        self._known_queues = {}
        for process, queue_key in known.items():
            if await client.exists(PROCESS_PREFIX.encode() + process):
                self._known_queues[process] = queue_key
                continue
            # HDEL answers 1 to exactly one process: it bounces the queue.
            if await client.hdel(PROCESS_QUEUES, process):
                await self._bounce_queue(queue_key)
            # A message the dead process popped but never delivered is in no
            # queue any more: every process tells its users whose peers were
            # there that those peers left.
            await self._tell_peers_of_dead(queue_key)

    async def _tell_peers_of_dead(self, queue_key: bytes) -> None:
        layer = get_channel_layer()
        prefix = getattr(layer, "prefix", "")
        channel_prefix = queue_key.decode().removeprefix(prefix)
        for session in list(self._local.values()):
            await layer.send(
                session.channel_name,
                {"type": "peers.lost", "channel_prefix": channel_prefix},
            )

    async def _bounce_queue(self, queue_key: bytes) -> None:
        layer = get_channel_layer()
        client = self._redis().client
        bounced = 0
        for key in (queue_key, queue_key + b"$inflight"):
            for member in await client.zrange(key, 0, -1):
                try:
                    event = layer.deserialize(member)
                except Exception:
                    continue
                sender_channel = event.get("sender_channel")
                if event.get("type") == "signal.relay" and sender_channel:
                    await layer.send(
                        sender_channel,
                        {"type": "relay.bounced", "target": event.get("target")},
                    )
                    bounced += 1
            await client.delete(key)
        if bounced:
            logger.info("bounced %d relays sent to a dead instance", bounced)

    async def _reclaim(self, on_reclaim: OnReclaim) -> None:
        # Redis lost this process's claims (restart) or let them lapse (the
        # process was frozen): claim them again, unless taken meanwhile.
        sessions = list(self._local.values())
        if sessions:
            logger.warning("re-claiming %d sessions after losing presence", len(sessions))
        for session in sessions:
            outcome = await self._run_claim(session, "reclaim")
            if isinstance(outcome, Taken):
                self._local.pop(session.channel_name, None)
            await on_reclaim(session, isinstance(outcome, Claimed))

    def local_sessions(self) -> list[LocalSession]:
        return list(self._local.values())

    def clear(self) -> None:
        self._local.clear()

    def __len__(self) -> int:
        return len(self._local)
