"""Abuse limits: pure bookkeeping, with the clock passed in (no I/O).

Each limit answers a question for the consumer; the consumer turns a "no"
into an Error frame or a close code.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """Allows ``rate`` events per second on average, ``burst`` at once.

    A full ICE trickle (a few dozen candidates within a second, next to an
    offer) fits in the burst; a flood drains it and is then held to ``rate``.
    """

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def allow(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass(slots=True)
class FailureWindow:
    """Counts failures per key within a sliding window of seconds."""

    _failures: dict[str, collections.deque] = field(default_factory=dict)

    def count(self, key: str, *, now: float, window: float) -> int:
        failures = self._failures.get(key)
        if failures is None:
            return 0
        while failures and failures[0] <= now - window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0
        return len(failures)

    def record(self, key: str, *, now: float) -> None:
        self._failures.setdefault(key, collections.deque()).append(now)

    def clear(self) -> None:
        self._failures.clear()

    def __len__(self) -> int:
        return len(self._failures)


@dataclass(slots=True)
class RecentSuccesses:
    """Remembers keys that succeeded lately: at most ``capacity`` of them,
    each for ``ttl`` seconds, the oldest forgotten first."""

    capacity: int
    ttl: float
    # Insertion order is age order: a key seen again moves to the end.
    _seen: dict = field(default_factory=dict)

    def record(self, key, *, now: float) -> None:
        self._seen.pop(key, None)
        self._seen[key] = now
        while len(self._seen) > self.capacity:
            del self._seen[next(iter(self._seen))]

    def contains(self, key, *, now: float) -> bool:
        seen = self._seen.get(key)
        return seen is not None and seen > now - self.ttl

    def clear(self) -> None:
        self._seen.clear()

    def __len__(self) -> int:
        return len(self._seen)


@dataclass(slots=True)
class ConnectionCounter:
    """Open connections per client address and in all."""

    _by_address: collections.Counter = field(default_factory=collections.Counter)
    _open: int = 0

    def refusal(self, address: str, *, per_address: int, total: int) -> str | None:
        """Return why a new connection is refused ("server", "address"), or
        None. A cap of 0 means no cap."""
        if total and self._open >= total:
            return "server"
        if per_address and self._by_address[address] >= per_address:
            return "address"
        return None

    def opened(self, address: str) -> None:
        self._by_address[address] += 1
        self._open += 1

    def closed(self, address: str) -> None:
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]
        self._open -= 1

    @property
    def open(self) -> int:
        return self._open

    def clear(self) -> None:
        self._by_address.clear()
        self._open = 0
