"""A queue with one reader, small enough to keep one per idle connection.

asyncio.Queue holds three deques (about 1.9 KB even when empty) to serve any
number of readers and writers; a connection's inbox has one reader. This
keeps a list (56 bytes empty; a deque preallocates 600+) and at most one
waiting future.

Its reader may also set ``absorb``, a function offered each item that
arrives while the reader is waiting with nothing queued: the item it would
handle next, at once. When the function returns True the item counts as
handled and the reader is not woken for it (a waking costs a loop turn and
the reader's whole dispatch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class Mailbox:
    __slots__ = ("items", "capacity", "waiter", "absorb")

    def __init__(self, capacity: int | None = None) -> None:
        # Oldest first. Popping the front of a list moves the rest, which is
        # nothing for inboxes that hold a few items at most.
        self.items: list = []
        self.capacity = capacity
        self.waiter: asyncio.Future | None = None
        self.absorb: Callable[[Any], bool] | None = None

    def put(self, item) -> bool:
        """Append ``item``; False (and nothing appended) when full."""
        absorb = self.absorb
        if (
            absorb is not None
            and not self.items
            and self.waiter is not None
            and absorb(item)
        ):
            return True
        if self.capacity is not None and len(self.items) >= self.capacity:
            return False
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def put_nowait(self, item) -> None:
        """asyncio.Queue's name for put, as Daphne calls it."""
        if not self.put(item):
            raise asyncio.QueueFull

    async def get(self):
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.items.pop(0)

    def qsize(self) -> int:
        return len(self.items)

    def empty(self) -> bool:
        return not self.items
