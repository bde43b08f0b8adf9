"""How this server connects to Redis, for presence and the channel layer.

One Redis URL (``REDIS_URL``), or Redis Sentinel (``REDIS_SENTINELS``), which
finds the current master and follows a failover. No Django here: settings
import it to configure channels-redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

SENTINEL_PORT = 26379


def retry_policy() -> dict:
    """Connection options that replace a stale pooled connection.

    After Redis restarts (or fails over), every pooled connection still
    points at the old server and the first command on each fails
    ("Connection closed by server"). One quick retry on a new connection
    hides that; a Redis that is really down still fails the command after
    the retry. A command whose reply was lost may run twice: the presence
    scripts and channels-redis' group_add set the same values again, and a
    relay doubled that way needs the server to die between running it and
    answering.
    """
    return {
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), 1),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


def parse_sentinels(value: str) -> tuple[tuple[str, int], ...]:
    """``host[:port],host[:port]`` -> ((host, port), ...); ValueError if bad."""
    sentinels = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        host, colon, port = item.rpartition(":")
        if not colon:
            host, port = item, str(SENTINEL_PORT)
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"not a host:port: {item!r}")
        sentinels.append((host, int(port)))
    return tuple(sentinels)


@dataclass(frozen=True)
class RedisConfig:
    """Where Redis is: a URL, or Sentinels and the name of their master."""

    url: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = "mymaster"
    # The master's own password and database (a URL carries its own).
    password: str | None = None
    db: int = 0
    # For the Sentinels themselves, when they require one.
    sentinel_password: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> RedisConfig:
        sentinels = parse_sentinels(environ.get("REDIS_SENTINELS", ""))
        if not sentinels:
            return cls(url=environ.get("REDIS_URL", "").strip())
        db = environ.get("REDIS_DB", "0").strip() or "0"
        if not db.isdigit():
            raise ValueError(f"REDIS_DB must be a number, not {db!r}")
        return cls(
            sentinels=sentinels,
            master_name=environ.get("REDIS_SENTINEL_MASTER", "").strip() or "mymaster",
            password=environ.get("REDIS_PASSWORD") or None,
            db=int(db),
            sentinel_password=environ.get("REDIS_SENTINEL_PASSWORD") or None,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.url or self.sentinels)

    def _sentinel_kwargs(self, connection: dict) -> dict:
        # Sentinels answer quickly or not at all: same timeouts, own password.
        kwargs = {
            key: connection[key]
            for key in ("socket_timeout", "socket_connect_timeout")
            if key in connection
        }
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        return kwargs

    def channel_layer_host(self, **connection) -> dict:
        """One entry of channels-redis' ``hosts``."""
        connection.update(retry_policy())
        if not self.sentinels:
            return {"address": self.url, **connection}
        return {
            "sentinels": list(self.sentinels),
            "master_name": self.master_name,
            "sentinel_kwargs": self._sentinel_kwargs(connection),
            "password": self.password,
            "db": self.db,
            **connection,
        }

    def blocking_pool(self, *, max_connections: int, **connection):
        """A connection pool for presence. With one URL, a burst of commands
        waits for a free connection instead of failing (redis-py's default
        pool refuses the 101st concurrent command); redis-py's Sentinel pool
        does not block, so it gets room for every command at once."""
        connection.update(retry_policy())
        if not self.sentinels:
            return aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=max_connections,
                timeout=connection.get("socket_timeout"),
                **connection,
            )
        sentinel = Sentinel(
            list(self.sentinels), sentinel_kwargs=self._sentinel_kwargs(connection)
        )
        return SentinelConnectionPool(
            self.master_name,
            sentinel,
            max_connections=max(max_connections, 1000),
            password=self.password,
            db=self.db,
            **connection,
        )
