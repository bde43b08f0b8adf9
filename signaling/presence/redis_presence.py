"""Name claims shared by every instance through Redis.

Each claim is a hash ``signaling:user:<name>`` holding the channel and the
process that serve the name, and what the sign-in proved. Claims are checked
and written by Lua scripts, so two instances can never both win a name.

A process proves it is alive by refreshing ``signaling:process:<name>`` with
a short TTL. A claim whose process key is gone (the process was killed, or
stopped for longer than the TTL) counts as free, and a look-up deletes it: a
relay to a user of a dead instance gets an Error within the TTL, never
silence.

Redis may lose everything: a restart with nothing on disk, a failover to a
replica that was behind. Three rules keep that from changing who holds a
name or telling anyone a peer left:

- Every process re-claims all its sessions when it finds its own key gone or
  the Redis server changed (its ``run_id``), and keeps retrying each session
  until it is claimed, found taken (the session is closed as replaced) or
  given up after ``SIGNALING_PRESENCE_RECOVERY_SECONDS`` (the session is told
  to reconnect and closed). Nothing is left open and unreachable.
- ``signaling:epoch`` exists as long as Redis kept its data. Whoever finds it
  missing opens a recovery window (``signaling:recovering``). Inside it a
  guest may not take a free name: it may be free only because its holder's
  instance has not claimed it again yet. The claim waits until every
  instance the database lists as live (its heartbeat rows survive the
  restart) has re-claimed everything it serves, which ends the window, or
  until the window expires. Accounts need no wait: their password is
  checked in the database.
- A process is judged dead by a missing key only once the Redis it is
  judged on has kept its data (and been the same server) for a TTL: as
  without restarts, dead means no refresh for a whole TTL. A restart alone
  never makes anyone "leave".

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
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from signaling.presence.process import PROCESS_NAME
from signaling.presence.redis_connection import RedisConfig
from signaling.presence.registry import (
    Claimed,
    Credential,
    LocalSession,
    ReclaimOutcome,
    Taken,
)

logger = logging.getLogger(__name__)

USER_PREFIX = "signaling:user:"
PROCESS_PREFIX = "signaling:process:"
# process name -> the channel-layer queue key its connections receive from.
PROCESS_QUEUES = "signaling:process-queues"
# Present for as long as Redis kept its data (no expiry): its absence means
# a restart that kept nothing, or a fresh Redis.
EPOCH_KEY = "signaling:epoch"
# Present (with an expiry) while instances re-claim after a loss of data,
# and the processes that have re-claimed all their sessions since.
RECOVERING_KEY = "signaling:recovering"
RECLAIMED_KEY = "signaling:reclaimed"
# Long enough to ride out a paused Redis (CLIENT PAUSE), short enough that a
# black-holed Redis does not hang a relay forever.
SOCKET_TIMEOUT_SECONDS = 10
POOL_SIZE = 64
# Sessions re-claimed at once: half the pool, so that re-claiming overlaps
# its round trips and still leaves connections for sign-ins and relays.
RECLAIM_CONCURRENCY = 32
# How often a sign-in waiting out a recovery window asks whether it is
# over, and how often it tries its claim again meanwhile.
RECOVERY_POLL_SECONDS = 0.1
RECLAIM_RECHECK_SECONDS = 0.5


# KEYS: user key, epoch key, recovering key, reclaimed key. ARGV: channel,
# process, digest,
# is_account, process prefix, mode, recovery window (ms).
# Modes: "claim" may take over per the credential rules, and answers -1
# ("wait") for a guest's claim of a free name during a recovery window;
# "reclaim" only takes a free name or keeps its own.
CLAIM = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[2], now[1] * 1000 + math.floor(now[2] / 1000))
  redis.call('SET', KEYS[3], 1, 'PX', ARGV[7])
  redis.call('DEL', KEYS[4])
end
local holder = redis.call('HMGET', KEYS[1], 'channel', 'process', 'digest', 'account')
local other = holder[1] and holder[1] ~= ARGV[1]
local alive = other and redis.call('EXISTS', ARGV[5] .. holder[2]) == 1
if alive then
  if ARGV[6] == 'reclaim' then
    return {0, holder[1]}
  end
  if ARGV[4] ~= '1' and (holder[4] == '1' or holder[3] ~= ARGV[3]) then
    return {0, holder[1]}
  end
elseif ARGV[6] == 'claim' and ARGV[4] ~= '1'
    and redis.call('EXISTS', KEYS[3]) == 1 then
  return {-1, false}
end
redis.call('HSET', KEYS[1], 'channel', ARGV[1], 'process', ARGV[2],
           'digest', ARGV[3], 'account', ARGV[4])
if other then
  return {1, holder[1]}
end
return {1, false}
"""

# KEYS: process key, epoch key, recovering key, reclaimed key. ARGV: TTL
# (ms), recovery window (ms). Answers whether the process key had expired
# (or was lost), for how long (ms) Redis has kept its data, and whether a
# recovery window is open.
BEAT = """
local now = redis.call('TIME')
now = now[1] * 1000 + math.floor(now[2] / 1000)
local epoch = tonumber(redis.call('GET', KEYS[2]))
if not epoch then
  epoch = now
  redis.call('SET', KEYS[2], epoch)
  redis.call('SET', KEYS[3], 1, 'PX', ARGV[2])
  redis.call('DEL', KEYS[4])
end
local kept = redis.call('SET', KEYS[1], 1, 'PX', ARGV[1], 'XX')
if not kept then
  redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
end
return {kept and 0 or 1, now - epoch, redis.call('EXISTS', KEYS[3])}
"""

# KEYS: recovering key, reclaimed key. ARGV: process name, recovery window
# (ms). Records that this process holds every session it serves again.
RECLAIMED = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
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

WAIT = -1

# Channel-layer events whose sender is told when they land in a dead
# instance's queue (the app protocol's and PeerJS's relays).
BOUNCED_EVENTS = frozenset({"signal.relay", "peerjs.relay"})


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
    beat: object
    reclaimed: object


# Called with a session this process re-claimed, lost to another sign-in,
# or gave up on.
OnReclaim = Callable[[LocalSession, ReclaimOutcome], Awaitable[None]]


class RedisRegistry:
    """Claims in Redis, plus the sessions this process serves."""

    def __init__(
        self, config: RedisConfig, *, ttl_seconds: float, recovery_seconds: float = 10
    ) -> None:
        self.config = config
        self.ttl_ms = int(ttl_seconds * 1000)
        self.recovery_ms = int(recovery_seconds * 1000)
        self.process_key = PROCESS_PREFIX + PROCESS_NAME
        self._local: dict[str, LocalSession] = {}
        # Sessions Redis lost and that are not claimed again yet, with the
        # loop time their loss was found.
        self._unclaimed: dict[str, tuple[LocalSession, float]] = {}
        # Channels of unclaimed sessions whose re-claim failed at least once.
        self._retried: set[str] = set()
        # One client per event loop: connections cannot cross loops.
        self._connections: dict[asyncio.AbstractEventLoop, _Connection] = {}
        self._keepers: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}
        self._alive: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        self._recovery_checks: dict[
            asyncio.AbstractEventLoop, tuple[asyncio.Future, float]
        ] = {}
        self._known_queues: dict[bytes, bytes] = {}
        self._queue_key: bytes | None = None
        self._queue_registered = False
        # The Redis server last seen (INFO run_id), when (loop time) this
        # process last saw it change, and how long Redis has kept its data.
        self._server_id: str | None = None
        self._server_changed_at = float("-inf")
        self._data_age_ms = 0

    def _redis(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = self._connections.get(loop)
        if connection is None:
            pool = self.config.blocking_pool(
                max_connections=POOL_SIZE,
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
                client.register_script(BEAT),
                client.register_script(RECLAIMED),
            )
            self._connections[loop] = connection
        return connection

    def redis_client(self) -> aioredis.Redis:
        """This event loop's client (for other presence data, such as
        PeerJS's offline queue)."""
        return self._redis().client

    async def _run_claim(
        self, session: LocalSession, mode: str
    ) -> Claimed | Taken | None:
        """Run the claim script; None means "wait" (a recovery window)."""
        digest, is_account = _credential_args(session.credential)
        won, previous = await self._redis().claim(
            keys=[
                _user_key(session.username),
                EPOCH_KEY,
                RECOVERING_KEY,
                RECLAIMED_KEY,
            ],
            args=[
                session.channel_name,
                PROCESS_NAME,
                digest,
                is_account,
                PROCESS_PREFIX,
                mode,
                self.recovery_ms,
            ],
        )
        if won == WAIT:
            return None
        if not won:
            return Taken()
        return Claimed(replaced_channel=previous.decode() if previous else None)

    async def claim(self, session: LocalSession) -> Claimed | Taken:
        # Until this process's key exists, others would treat its claims and
        # its queue as dead; wait (briefly) for the keeper's first beat.
        loop = asyncio.get_running_loop()
        alive = self._alive.get(loop)
        if alive is not None and not alive.is_set():
            try:
                await asyncio.wait_for(alive.wait(), SOCKET_TIMEOUT_SECONDS)
            except TimeoutError:
                raise RedisError("presence keeper has not reached Redis") from None
        await self._register_queue(session.channel_name)
        deadline = loop.time() + self.recovery_ms / 1000 + SOCKET_TIMEOUT_SECONDS
        waited = False
        while True:
            outcome = await self._run_claim(session, "claim")
            if outcome is not None:
                if isinstance(outcome, Claimed):
                    self._local[session.channel_name] = session
                if waited:
                    from signaling.observability import metrics

                    metrics.presence_claim_waited()
                return outcome
            # Redis lost its data a moment ago, and a guest claims a free
            # name: it may be free only because its holder's instance has
            # not claimed it again yet. Claim again once the window ends,
            # or after a while (the holder may have re-claimed meanwhile).
            waited = True
            claim_again_at = loop.time() + RECLAIM_RECHECK_SECONDS
            while loop.time() < claim_again_at and not await self._recovery_over():
                if loop.time() > deadline:
                    raise RedisError(
                        "instances did not re-claim their sessions in time"
                    )
                await asyncio.sleep(RECOVERY_POLL_SECONDS)

    async def _recovery_over(self) -> bool:
        """Whether the recovery window has ended, asked at most once per
        poll interval: a storm of sign-ins waiting on it shares one check
        (a database query and a Redis round trip) instead of one each."""
        loop = asyncio.get_running_loop()
        check, asked_at = self._recovery_checks.get(loop, (None, 0.0))
        stale = loop.time() - asked_at >= RECOVERY_POLL_SECONDS
        if check is None or (check.done() and stale):
            check = asyncio.ensure_future(self._every_live_process_reclaimed())
            self._recovery_checks[loop] = (check, loop.time())
        return await asyncio.shield(check)

    async def _every_live_process_reclaimed(self) -> bool:
        """End the recovery window if every live instance has re-claimed."""
        from signaling.presence.live_sessions import live_process_names

        try:
            live = await live_process_names()
        except Exception:
            # Without the database nobody can say: wait out the window.
            logger.warning("cannot list live instances", exc_info=True)
            return False
        client = self._redis().client
        reclaimed = {name.decode() for name in await client.smembers(RECLAIMED_KEY)}
        waiting_for = sorted(live - reclaimed)
        if waiting_for and await self._data_age_ms_now(client) >= self.ttl_ms:
            # An instance that has not refreshed its key for a whole TTL on
            # this Redis is dead (the same rule as for relays): it will not
            # re-claim anything, and its heartbeat row is merely not stale
            # yet.
            alive = await client.exists(
                *(PROCESS_PREFIX + name for name in waiting_for)
            )
            if not alive:
                waiting_for = []
        if waiting_for:
            return False
        await client.delete(RECOVERING_KEY)
        logger.info("every live instance re-claimed its sessions")
        return True

    async def _data_age_ms_now(self, client: aioredis.Redis) -> int:
        """How long (ms) Redis has kept its data, by its own clock."""
        async with client.pipeline(transaction=False) as pipe:
            epoch, (seconds, microseconds) = await pipe.get(EPOCH_KEY).time().execute()
        if epoch is None:
            return 0
        return seconds * 1000 + microseconds // 1000 - int(epoch)

    async def release(self, *, username: str, channel_name: str) -> bool:
        self._local.pop(channel_name, None)
        self._forget_unclaimed(channel_name)
        released = await self._redis().release(
            keys=[_user_key(username)], args=[channel_name]
        )
        return bool(released)

    async def lookup(self, username: str) -> str | None:
        channel = await self._redis().lookup(
            keys=[_user_key(username)], args=[PROCESS_PREFIX]
        )
        return channel.decode() if channel else None

    async def release_all_local(self) -> None:
        """Release every claim of this process at once (graceful stop)."""
        sessions = list(self._local.values())
        self.clear()
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
                recovering = await self._beat()
                alive.set()
                if self._unclaimed:
                    await self._reclaim(on_reclaim)
                if recovering and not self._unclaimed:
                    await self._redis().reclaimed(
                        keys=[RECOVERING_KEY, RECLAIMED_KEY],
                        args=[PROCESS_NAME, self.recovery_ms],
                    )
                await self._bounce_for_dead_processes()
            except (RedisError, OSError):
                logger.warning("presence keep-alive cannot reach Redis")
            await asyncio.sleep(interval)

    async def _beat(self) -> bool:
        """Refresh this process's key; note whatever Redis lost. Return
        whether a recovery window is open."""
        redis = self._redis()
        loop = asyncio.get_running_loop()
        server_id = await self._server_run_id(redis.client)
        lost, self._data_age_ms, recovering = await redis.beat(
            keys=[self.process_key, EPOCH_KEY, RECOVERING_KEY, RECLAIMED_KEY],
            args=[self.ttl_ms, self.recovery_ms],
        )
        changed = server_id != self._server_id and self._server_id is not None
        self._server_id = server_id
        if changed:
            self._server_changed_at = loop.time()
            # A failover that kept the marker key still lost the latest
            # claims: guests wait for re-claims as after a restart.
            await redis.client.set(RECOVERING_KEY, 1, px=self.recovery_ms, nx=True)
        if changed or lost:
            self._queue_registered = False
            self._lost_everything(loop.time())
        if not self._queue_registered and self._queue_key is not None:
            await redis.client.hset(PROCESS_QUEUES, PROCESS_NAME, self._queue_key)
            self._queue_registered = True
        return bool(recovering)

    async def _server_run_id(self, client: aioredis.Redis) -> str | None:
        # A failover to a replica keeps this process's key (replicated) but
        # may lose the latest claims: a new run_id re-claims everything.
        try:
            info = await client.info("server")
        except RedisError as error:
            if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
                raise
            return None  # INFO disabled (some managed Redis): key loss only
        return info.get("run_id")

    def _lost_everything(self, now: float) -> None:
        if not self._local:
            return
        from signaling.observability import metrics

        metrics.presence_lost()
        logger.warning(
            "re-claiming %d sessions: Redis lost or changed its data", len(self._local)
        )
        for channel, session in self._local.items():
            self._unclaimed.setdefault(channel, (session, now))

    async def _register_queue(self, channel_name: str) -> None:
        if self._queue_registered:
            return
        layer = get_channel_layer()
        queue_key = getattr(layer, "prefix", "") + layer.non_local_name(channel_name)
        self._queue_key = queue_key.encode()
        await self._redis().client.hset(PROCESS_QUEUES, PROCESS_NAME, queue_key)
        self._queue_registered = True

    async def _reclaim(self, on_reclaim: OnReclaim) -> None:
        """Claim every lost session again.

        A failure is retried at the next beat; a session still unclaimed
        once the recovery window has passed since its loss was found is
        given up, and its client told to reconnect.
        """
        semaphore = asyncio.Semaphore(RECLAIM_CONCURRENCY)
        pending = list(self._unclaimed.items())
        await asyncio.gather(
            *(
                self._reclaim_one(channel, session, since, on_reclaim, semaphore)
                for channel, (session, since) in pending
            )
        )
        if not self._unclaimed:
            logger.info("re-claimed every session")

    async def _reclaim_one(
        self,
        channel: str,
        session: LocalSession,
        since: float,
        on_reclaim: OnReclaim,
        semaphore: asyncio.Semaphore,
    ) -> None:
        from signaling.observability import metrics

        async with semaphore:
            if self._local.get(channel) is not session:
                self._forget_unclaimed(channel)  # it ended meanwhile
                return
            metrics.presence_reclaim_attempted(retry=channel in self._retried)
            try:
                outcome = await self._run_claim(session, "reclaim")
                if self._local.get(channel) is not session:
                    # Ended while the claim was on its way: undo it.
                    await self.release(username=session.username, channel_name=channel)
                    return
                result = ReclaimOutcome.KEPT
                if isinstance(outcome, Taken):
                    result = ReclaimOutcome.TAKEN
                    self._local.pop(channel, None)
                await on_reclaim(session, result)
            except (RedisError, OSError):
                metrics.presence_reclaim_failed()
                self._retried.add(channel)
                if asyncio.get_running_loop().time() - since < self.recovery_ms / 1000:
                    return
                # Redis answers (this beat got through) but this session
                # cannot be claimed: better a reconnect than a session
                # nobody can reach.
                result = ReclaimOutcome.ABANDONED
                self._local.pop(channel, None)
                logger.warning(
                    "could not re-claim username=%s; asking it to reconnect",
                    session.username,
                )
                await on_reclaim(session, result)
            self._forget_unclaimed(channel)
            metrics.presence_reclaimed(result)

    def _forget_unclaimed(self, channel: str) -> None:
        self._unclaimed.pop(channel, None)
        self._retried.discard(channel)

    async def _bounce_for_dead_processes(self) -> None:
        # The rule as without restarts: dead means no refresh for a TTL, on
        # a Redis that has kept its data (and been the same server) that long.
        settle_ms = self.ttl_ms
        since_change_ms = (
            asyncio.get_running_loop().time() - self._server_changed_at
        ) * 1000
        if self._data_age_ms < settle_ms or since_change_ms < settle_ms:
            # Too soon after a restart or failover: a live process may not
            # have refreshed its key on this Redis yet.
            return
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
                if event.get("type") in BOUNCED_EVENTS and sender_channel:
                    await layer.send(
                        sender_channel,
                        {"type": "relay.bounced", "target": event.get("target")},
                    )
                    bounced += 1
            await client.delete(key)
        if bounced:
            logger.info("bounced %d relays sent to a dead instance", bounced)

    def local_sessions(self) -> list[LocalSession]:
        return list(self._local.values())

    def clear(self) -> None:
        self._local.clear()
        self._unclaimed.clear()
        self._retried.clear()

    def __len__(self) -> int:
        return len(self._local)
