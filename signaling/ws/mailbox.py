"""A queue with one reader, small enough to keep one per idle connection.

asyncio.Queue holds three deques (about 1.9 KB even when empty) to serve any
number of readers and writers; a connection's inbox has one reader. This
keeps a list (56 bytes empty; a deque preallocates 600+) and at most one
waiting future.
"""

from __future__ import annotations

import asyncio


class Mailbox:
    __slots__ = ("items", "capacity", "waiter")

    def __init__(self, capacity: int | None = None) -> None:
        # Oldest first. Popping the front of a list moves the rest, which is
        # nothing for inboxes that hold a few items at most.
        self.items: list = []
        self.capacity = capacity
        self.waiter: asyncio.Future | None = None

    def put(self, item) -> bool:
        """Append ``item``; False (and nothing appended) when full."""
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
