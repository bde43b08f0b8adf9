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

import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

from .mailbox import Mailbox

# How often the full sweep may run; between sweeps only the queue or group
# being used is checked.
SWEEP_INTERVAL_SECONDS = 1.0


class SignalingInMemoryChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._next_sweep = 0.0

    def _mailbox(self, channel) -> Mailbox:
        box = self.channels.get(channel)
        if box is None:
            box = self.channels[channel] = Mailbox(self.get_capacity(channel))
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
                box.items.pop(0)
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
