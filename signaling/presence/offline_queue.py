"""PeerJS's offline queue: frames for an id that is not connected yet.

peerjs-server keeps OFFER, ANSWER and CANDIDATE frames sent to an id nobody
holds, hands them over when the id connects, and after ``expire_timeout``
(5 s) drops them and tells each sender once with ``EXPIRE``. Here the queue
lives where the claims live: in this process's memory with one process, in
Redis when instances share one, so a frame queued on instance A is delivered
when its addressee connects to instance B.

Entries are ``sender + "\\n" + frame``: PeerJS ids never hold a newline.
The sender's own connection sets a timer when it queues; when the timer
fires, what is still queued from it is removed and it gets one EXPIRE.
"""

from __future__ import annotations

from django.conf import settings

from signaling.presence.registry import LocalRegistry, registry

QUEUE_PREFIX = "signaling:peerjs-queue:"
# An OFFER and a few dozen CANDIDATEs per connection attempt, from a few
# callers at once; more than that for an absent id is not a caller waiting
# for it to arrive.
MAX_QUEUED_PER_ID = 256

# KEYS: queue. ARGV: entry, limit, lifetime (ms).
PUT = """
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: queue.
TAKE = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return items
"""

# KEYS: queue. ARGV: sender prefix ("<sender>\\n"). Answers how many
# entries from that sender were removed.
EXPIRE = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local kept = {}
local prefix = ARGV[1]
for _, item in ipairs(items) do
  if string.sub(item, 1, #prefix) ~= prefix then
    kept[#kept + 1] = item
  end
end
local removed = #items - #kept
if removed > 0 then
  local ttl = redis.call('PTTL', KEYS[1])
  redis.call('DEL', KEYS[1])
  if #kept > 0 then
    redis.call('RPUSH', KEYS[1], unpack(kept))
    if ttl > 0 then
      redis.call('PEXPIRE', KEYS[1], ttl)
    end
  end
end
return removed
"""


def _entry(sender: str, frame: str) -> str:
    return sender + "\n" + frame


def _frame(entry: str | bytes) -> str:
    if isinstance(entry, bytes):
        entry = entry.decode("utf-8")
    return entry.partition("\n")[2]


class LocalOfflineQueue:
    """Queued frames in this process's memory (one process serves all)."""

    def __init__(self) -> None:
        self._queues: dict[str, list[tuple[str, str]]] = {}

    async def put(self, *, dst: str, sender: str, frame: str) -> bool:
        queue = self._queues.setdefault(dst, [])
        if len(queue) >= MAX_QUEUED_PER_ID:
            return False
        queue.append((sender, frame))
        return True

    async def take(self, dst: str) -> list[str]:
        return [frame for _, frame in self._queues.pop(dst, ())]

    async def expire(self, *, dst: str, sender: str) -> bool:
        queue = self._queues.get(dst)
        if not queue:
            return False
        kept = [item for item in queue if item[0] != sender]
        if kept:
            self._queues[dst] = kept
        else:
            del self._queues[dst]
        return len(kept) < len(queue)

    def clear(self) -> None:
        self._queues.clear()


class RedisOfflineQueue:
    """Queued frames in Redis, shared by every instance."""

    def __init__(self) -> None:
        self._scripts: dict[object, tuple] = {}

    def _script(self, index: int):
        # The registry's client: one per event loop, reloading scripts
        # after a Redis restart.
        client = registry.redis_client()
        scripts = self._scripts.get(client)
        if scripts is None:
            scripts = tuple(client.register_script(s) for s in (PUT, TAKE, EXPIRE))
            self._scripts = {client: scripts}
        return scripts[index]

    async def put(self, *, dst: str, sender: str, frame: str) -> bool:
        # Kept a little past the expiry, in case the sender's instance dies
        # before its timer removes what it queued.
        lifetime_ms = int(settings.SIGNALING_PEERJS_EXPIRE_SECONDS * 2000)
        stored = await self._script(0)(
            keys=[QUEUE_PREFIX + dst],
            args=[_entry(sender, frame), MAX_QUEUED_PER_ID, lifetime_ms],
        )
        return bool(stored)

    async def take(self, dst: str) -> list[str]:
        entries = await self._script(1)(keys=[QUEUE_PREFIX + dst])
        return [_frame(entry) for entry in entries]

    async def expire(self, *, dst: str, sender: str) -> bool:
        removed = await self._script(2)(keys=[QUEUE_PREFIX + dst], args=[sender + "\n"])
        return bool(removed)

    def clear(self) -> None:
        """Nothing in memory (tests flush Redis themselves)."""


def make_offline_queue() -> LocalOfflineQueue | RedisOfflineQueue:
    if isinstance(registry, LocalRegistry):
        return LocalOfflineQueue()
    return RedisOfflineQueue()


offline_queue = make_offline_queue()
