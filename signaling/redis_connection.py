"""How this server connects to Redis, for presence and the channel layer.

No Django here: settings import it to configure channels-redis.
"""

from __future__ import annotations

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


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
