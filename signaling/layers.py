"""An in-memory channel layer whose cost per message does not grow with the
number of connections.

Channels' ``InMemoryChannelLayer`` sweeps every channel and every group for
expired entries on each receive and each group send, and deep-copies every
message: with 15 000 users online each relay walks 15 000 queues. This
subclass keeps the same behaviour (capacity, message expiry, group expiry,
an expired message removing its channel from groups) but checks only the
channel or group at hand on each call, and sweeps everything at most once a
second.
"""

from __future__ import annotations

import asyncio
import collections
import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

# How often the full sweep may run; between sweeps only the queue or group
# being used is checked.
SWEEP_INTERVAL_SECONDS = 1.0


class _Mailbox:
    """A channel's queue: a deque and at most one waiting receiver.

    An asyncio.Queue costs about 4 KB; with one per idle connection that is a
    quarter of the memory a connection takes.
    """

    __slots__ = ("items", "capacity", "waiter")

    def __init__(self, capacity: int) -> None:
        self.items: collections.deque = collections.deque()
        self.capacity = capacity
        self.waiter: asyncio.Future | None = None

    def put(self, item) -> bool:
        if len(self.items) >= self.capacity:
            return False
        self.items.append(item)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        return True

    async def get(self):
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.items.popleft()


class SignalingInMemoryChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._next_sweep = 0.0

    def _mailbox(self, channel) -> _Mailbox:
        box = self.channels.get(channel)
        if box is None:
            box = self.channels[channel] = _Mailbox(self.get_capacity(channel))
        return box

    def _maybe_sweep(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL_SECONDS
            self._clean_expired()

    def _clean_expired(self):
        now = time.time()
        for channel, box in list(self.channels.items()):
            while box.items and box.items[0][0] < now:
                box.items.popleft()
                # An expired message takes its channel out of every group.
                self._remove_from_groups(channel)
            if not box.items and box.waiter is None:
                del self.channels[channel]
        cutoff = time.time() - self.group_expiry
        for members in self.groups.values():
            for channel, joined in list(members.items()):
                if joined and joined < cutoff:
                    del members[channel]

    async def send(self, channel, message):
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        # A shallow copy: events here hold strings and numbers, and the
        # receiver must not see later changes to the sender's dict.
        if not self._mailbox(channel).put((time.time() + self.expiry, dict(message))):
            raise ChannelFull(channel)

    async def receive(self, channel):
        self.require_valid_channel_name(channel)
        self._maybe_sweep()
        box = self._mailbox(channel)
        while True:
            expires, message = await box.get()
            if expires >= time.time():
                return message
            self._remove_from_groups(channel)

    async def group_send(self, group, message):
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._maybe_sweep()
        members = self.groups.get(group)
        if not members:
            return
        cutoff = time.time() - self.group_expiry
        for channel, joined in list(members.items()):
            if joined and joined < cutoff:
                del members[channel]
                continue
            try:
                await self.send(channel, message)
            except ChannelFull:
                pass
