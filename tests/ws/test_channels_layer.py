"""The in-memory channel layer keeps Channels' semantics at constant cost."""

import asyncio
import time

import pytest
from channels.exceptions import ChannelFull

from signaling.ws.channels_layer import (
    SWEEP_BATCH,
    SWEEP_INTERVAL_SECONDS,
    SignalingInMemoryChannelLayer,
)
from signaling.ws.mailbox import Mailbox


async def test_messages_arrive_in_order_and_wake_a_waiting_receiver():
    layer = SignalingInMemoryChannelLayer()
    waiting = asyncio.ensure_future(layer.receive("specific.a!1"))
    await asyncio.sleep(0)
    await layer.send("specific.a!1", {"type": "x", "n": 1})
    await layer.send("specific.a!1", {"type": "x", "n": 2})
    assert (await waiting)["n"] == 1
    assert (await layer.receive("specific.a!1"))["n"] == 2


async def test_a_full_channel_refuses_instead_of_dropping():
    layer = SignalingInMemoryChannelLayer(capacity=2)
    await layer.send("specific.a!1", {"type": "x"})
    await layer.send("specific.a!1", {"type": "x"})
    with pytest.raises(ChannelFull):
        await layer.send("specific.a!1", {"type": "x"})


async def test_the_receiver_gets_a_copy_of_the_message():
    layer = SignalingInMemoryChannelLayer()
    message = {"type": "x", "n": 1}
    await layer.send("specific.a!1", message)
    message["n"] = 2
    assert (await layer.receive("specific.a!1"))["n"] == 1


async def test_expired_messages_are_dropped_and_leave_their_groups():
    layer = SignalingInMemoryChannelLayer(expiry=0)
    await layer.group_add("g", "specific.a!1")
    await layer.send("specific.a!1", {"type": "old"})
    await asyncio.sleep(0.01)
    layer._clean_expired()
    assert "specific.a!1" not in layer.groups.get("g", {})
    assert "specific.a!1" not in layer.channels


async def test_group_memberships_expire_unless_renewed():
    layer = SignalingInMemoryChannelLayer(group_expiry=0.05)
    await layer.group_add("g", "specific.a!1")
    await layer.group_add("g", "specific.b!1")
    await asyncio.sleep(0.1)
    await layer.group_add("g", "specific.b!1")  # renewed
    await layer.group_send("g", {"type": "hello"})
    assert (await layer.receive("specific.b!1"))["type"] == "hello"
    assert not layer.channels.get("specific.a!1")


async def test_a_receive_does_not_sweep_every_channel():
    """The stock layer walks every queue on each receive: cost per message
    grew with the number of connections. Here sweeping visits at most one
    batch of channels per interval however many messages pass."""
    layer = SignalingInMemoryChannelLayer()
    visited = 0
    original = layer._sweep_channel

    def counting(channel, now):
        nonlocal visited
        visited += 1
        original(channel, now)

    layer._sweep_channel = counting
    idle = [asyncio.ensure_future(layer.receive(f"specific.i!{n}")) for n in range(3000)]
    await asyncio.sleep(0)
    visited = 0
    started = time.monotonic()
    for _ in range(2000):
        await layer.send("specific.a!1", {"type": "x"})
        await layer.receive("specific.a!1")
    steps = (time.monotonic() - started) / SWEEP_INTERVAL_SECONDS + 1
    for task in idle:
        task.cancel()
    assert visited <= steps * SWEEP_BATCH < 3000


async def test_a_sweep_pass_reaches_every_channel_in_slices():
    layer = SignalingInMemoryChannelLayer(expiry=0)
    for n in range(SWEEP_BATCH * 2 + 1):
        await layer.send(f"specific.s!{n}", {"type": "old"})
    await asyncio.sleep(0.01)
    layer._sweep_step(SWEEP_BATCH)
    assert len(layer.channels) == SWEEP_BATCH + 1
    layer._sweep_step(SWEEP_BATCH)
    layer._sweep_step(SWEEP_BATCH)
    assert not layer.channels


async def test_new_channels_have_valid_distinct_names():
    layer = SignalingInMemoryChannelLayer()
    names = {await layer.new_channel() for _ in range(1000)}
    assert len(names) == 1000
    for name in names:
        layer.require_valid_channel_name(name)
        assert name.startswith("specific..inmemory!")


async def test_an_attached_channel_is_delivered_into_its_consumers_inbox():
    layer = SignalingInMemoryChannelLayer(capacity=3)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "early"})
    inbox = Mailbox()
    inbox.put({"type": "websocket.connect"})
    layer.attach(channel, inbox)
    await layer.send(channel, {"type": "late"})
    items = [await inbox.get() for _ in range(3)]
    assert items[0] == {"type": "websocket.connect"}
    assert [message["type"] for _, message in items[1:]] == ["early", "late"]
    assert all(expires > time.time() for expires, _ in items[1:])


async def attached_with_a_socket_event(layer):
    """A channel attached to an inbox that already holds a socket event."""
    channel = await layer.new_channel()
    inbox = Mailbox()
    layer.attach(channel, inbox)
    inbox.put({"type": "websocket.receive", "text": "x"})
    return channel, inbox


async def test_an_attached_inbox_holding_capacity_events_of_any_kind_refuses():
    layer = SignalingInMemoryChannelLayer(capacity=2)
    channel, inbox = await attached_with_a_socket_event(layer)
    await layer.send(channel, {"type": "one"})
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "two"})
    assert inbox.qsize() == 2


async def test_a_detached_channel_no_longer_reaches_the_inbox_and_sweeps_skip_attached_ones():
    layer = SignalingInMemoryChannelLayer(expiry=0)
    channel, inbox = await attached_with_a_socket_event(layer)
    await layer.send(channel, {"type": "expiring"})
    time.sleep(0.01)
    layer._clean_expired()  # would choke on the socket event if it looked
    assert inbox.qsize() == 2
    layer.detach(channel)
    await layer.send(channel, {"type": "after"})
    assert inbox.qsize() == 2


class RecordingConsumer:
    """A consumer's reader waiting on its inbox, and a handler that notes
    which task ran it (and can be made to wait)."""

    def __init__(self, layer, channel):
        self.inbox = Mailbox()
        self.handled: list[tuple[str, asyncio.Task]] = []
        self.release = asyncio.Event()
        self.release.set()
        layer.attach(channel, self.inbox, self.handle)
        self.reader = asyncio.ensure_future(self.inbox.get())

    async def handle(self, message):
        self.handled.append((message["type"], asyncio.current_task()))
        await self.release.wait()


async def test_an_idle_consumer_handles_a_message_in_the_senders_task():
    layer = SignalingInMemoryChannelLayer()
    channel = await layer.new_channel()
    consumer = RecordingConsumer(layer, channel)
    await asyncio.sleep(0)  # the reader now waits on the empty inbox
    await layer.send(channel, {"type": "now"})
    assert consumer.handled == [("now", asyncio.current_task())]
    assert consumer.inbox.empty() and not consumer.reader.done()
    consumer.reader.cancel()


async def test_a_consumer_with_events_queued_gets_the_message_queued_behind_them():
    layer = SignalingInMemoryChannelLayer()
    channel = await layer.new_channel()
    consumer = RecordingConsumer(layer, channel)
    await asyncio.sleep(0)
    consumer.inbox.put({"type": "websocket.receive", "text": "first"})
    await layer.send(channel, {"type": "second"})
    assert consumer.handled == []
    assert await consumer.reader == {"type": "websocket.receive", "text": "first"}
    assert (await consumer.inbox.get())[1] == {"type": "second"}


async def test_while_a_message_is_handled_at_once_other_events_wait_for_it():
    layer = SignalingInMemoryChannelLayer()
    channel = await layer.new_channel()
    consumer = RecordingConsumer(layer, channel)
    await asyncio.sleep(0)
    consumer.release.clear()
    sending = asyncio.ensure_future(layer.send(channel, {"type": "slow"}))
    await asyncio.sleep(0)
    # The handler waits; a socket event and another message arrive.
    consumer.inbox.put({"type": "websocket.receive", "text": "meanwhile"})
    await layer.send(channel, {"type": "queued"})
    await asyncio.sleep(0.01)
    assert not consumer.reader.done(), "the reader ran beside the handler"
    consumer.release.set()
    await sending
    assert await consumer.reader == {"type": "websocket.receive", "text": "meanwhile"}
    assert (await consumer.inbox.get())[1] == {"type": "queued"}
    assert [kind for kind, _ in consumer.handled] == ["slow"]


async def test_a_consumer_running_a_handler_of_its_own_gets_the_message_queued():
    layer = SignalingInMemoryChannelLayer()
    channel = await layer.new_channel()
    consumer = RecordingConsumer(layer, channel)
    # Its reader is not waiting (it has not started, as while it handles).
    await layer.send(channel, {"type": "later"})
    assert consumer.handled == []
    assert (await consumer.reader)[1] == {"type": "later"}


async def test_a_detached_channel_is_no_longer_handled_at_once():
    layer = SignalingInMemoryChannelLayer()
    channel = await layer.new_channel()
    consumer = RecordingConsumer(layer, channel)
    await asyncio.sleep(0)
    layer.detach(channel)
    await layer.send(channel, {"type": "after"})
    assert consumer.handled == []
    consumer.reader.cancel()
