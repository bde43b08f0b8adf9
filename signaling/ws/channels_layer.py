"""A replacement for part of Channels: an in-memory channel layer whose
cost per message does not grow with the number of connections.

Subclasses Channels' InMemoryChannelLayer (reading and writing its
``channels`` and ``groups`` dicts); it patches nothing and does not depend
on the speedups switch. Written against channels 4.3.2
(``channels/layers.py``; ``UPSTREAM``, checked by
tests/speedups/test_versions.py).

Channels' ``InMemoryChannelLayer`` sweeps every channel and every group for
expired entries on each receive and each group send, and deep-copies every
message: with 15 000 users online each relay walks 15 000 queues. This
subclass keeps the same behaviour (capacity, message expiry, group expiry,
an expired message removing its channel from groups) but checks only the
channel or group at hand on each call, and sweeps everything at most once a
second.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

from signaling.ws.mailbox import Mailbox

UPSTREAM = {"channels": "4.3.2"}

# Expired messages and group memberships are swept a slice at a time: at
# most SWEEP_BATCH channels and SWEEP_BATCH groups every SWEEP_INTERVAL
# seconds, so a pass over many idle connections is spread over several
# seconds instead of stalling every relay once a second. Between steps
# only the queue or group being used is checked.
SWEEP_INTERVAL_SECONDS = 0.1
SWEEP_BATCH = 500


class SignalingInMemoryChannelLayer(InMemoryChannelLayer):
    # A message sent is handed over in this process exactly once: receivers
    # need not look out for a second delivery (Redis may repeat one).
    delivers_once = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._next_sweep = 0.0
        # Names still to visit in the current pass, last first.
        self._channels_to_sweep: list[str] = []
        self._groups_to_sweep: list[str] = []
        # Channels delivered straight into their consumer's inbox, with the
        # backlog at which that inbox counts as full.
        self._attached: dict[str, int] = {}
        # Attached channels whose consumer can also take a message at once,
        # in the sender's task, while it waits for input (see attach).
        self._handlers: dict[str, Callable[[dict], Awaitable[None]]] = {}

    def attach(self, channel: str, inbox: Mailbox,
               handler: Callable[[dict], Awaitable[None]] | None = None) -> None:
        """Deliver ``channel``'s messages into ``inbox``, as ``(expires,
        message)`` tuples, instead of holding them for receive().

        The consumer then reads its socket's events and its channel's
        messages from one queue, in arrival order, with no second task per
        connection waiting on the layer (its coroutines, task, future and
        lock were 12 of the 78 objects an idle connection kept, and a task
        switch per relayed message). Its inbox's length is the
        channel's backlog for the capacity check: a consumer with that many
        events of any kind waiting is not keeping up.

        With ``handler``, a message sent while the consumer is idle (its
        reader waiting on an empty inbox) is handled at once by
        ``await handler(message)`` in the sender's task, instead of being
        queued and the consumer's task woken to handle it: one task switch
        less per relayed message. The consumer's own reader is held
        meanwhile (events arriving then are queued and read after), so its
        handlers still run one at a time and in arrival order.
        """
        waiting = self.channels.get(channel)
        if waiting is not None:
            for item in waiting.items:
                inbox.put(item)
        self.channels[channel] = inbox
        self._attached[channel] = self.get_capacity(channel)
        if handler is not None:
            self._handlers[channel] = handler

    async def flush(self):
        await super().flush()
        self._attached = {}
        self._handlers = {}

    def detach(self, channel: str) -> None:
        """Stop delivering into the consumer's inbox (it is ending)."""
        self._handlers.pop(channel, None)
        if self._attached.pop(channel, None) is not None:
            self.channels.pop(channel, None)

    def expired(self, channel: str) -> None:
        """An attached consumer found an expired message in its inbox."""
        self._remove_from_groups(channel)

    async def new_channel(self, prefix="specific."):
        # Channels' own draws 12 letters one random.choice at a time (24
        # Python calls per connection); 64 random bits make as unlikely a
        # clash, in one call.
        return f"{prefix}.inmemory!{random.getrandbits(64):016x}"

    def _mailbox(self, channel) -> Mailbox:
        box = self.channels.get(channel)
        if box is None:
            box = self.channels[channel] = Mailbox(self.get_capacity(channel))
        return box

    def _maybe_sweep(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL_SECONDS
            self._sweep_step(SWEEP_BATCH)

    def _sweep_step(self, batch: int) -> None:
        if not self._channels_to_sweep:
            self._channels_to_sweep = list(self.channels)
        if not self._groups_to_sweep:
            self._groups_to_sweep = list(self.groups)
        now = time.time()
        channels, groups = self._channels_to_sweep, self._groups_to_sweep
        for _ in range(min(batch, len(channels))):
            self._sweep_channel(channels.pop(), now)
        cutoff = now - self.group_expiry
        for _ in range(min(batch, len(groups))):
            self._sweep_group(groups.pop(), cutoff)

    def _clean_expired(self):
        """A whole pass at once (Channels' name for it)."""
        self._channels_to_sweep, self._groups_to_sweep = [], []
        self._sweep_step(max(len(self.channels), len(self.groups)))
        self._channels_to_sweep, self._groups_to_sweep = [], []

    def _sweep_channel(self, channel: str, now: float) -> None:
        box = self.channels.get(channel)
        if box is None or channel in self._attached:
            # An attached consumer checks expiry as it reads its inbox.
            return
        while box.items and box.items[0][0] < now:
            box.items.pop(0)
            # An expired message takes its channel out of every group.
            self._remove_from_groups(channel)
        if not box.items and box.waiter is None:
            del self.channels[channel]

    def _sweep_group(self, group: str, cutoff: float) -> None:
        members = self.groups.get(group)
        if members is None:
            return
        for channel, joined in list(members.items()):
            if joined and joined < cutoff:
                del members[channel]

    async def send(self, channel, message):
        assert isinstance(message, dict), "message is not a dict"
        if channel not in self._attached:
            # An attached channel's name is one new_channel() made.
            self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        # A shallow copy: events here hold strings and numbers, and the
        # receiver must not see later changes to the sender's dict.
        box = self._mailbox(channel)
        handler = self._handlers.get(channel)
        if handler is not None:
            reader = box.waiter
            if reader is not None and not box.items and not reader.done():
                await self._handle_now(box, reader, handler, dict(message))
                return
        # An attached inbox has no capacity of its own (Daphne fills it
        # too); a channel's own mailbox enforces its capacity in put().
        limit = self._attached.get(channel)
        if (limit is not None and len(box.items) >= limit) or not box.put(
            (time.time() + self.expiry, dict(message))
        ):
            raise ChannelFull(channel)

    @staticmethod
    async def _handle_now(box: Mailbox, reader, handler, message: dict) -> None:
        # Hold the consumer's reader: what arrives while the handler runs
        # is queued (put() wakes no one) and read once it is done.
        box.waiter = None
        try:
            await handler(message)
        finally:
            if box.waiter is None:
                box.waiter = reader
            if box.items and not reader.done():
                reader.set_result(None)

    async def receive(self, channel):
        self.require_valid_channel_name(channel)
        assert channel not in self._attached, "an attached channel is read from its inbox"
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
