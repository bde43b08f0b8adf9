"""The single-reader queue behind each connection's inbox."""

import asyncio

import pytest

from signaling.ws.mailbox import Mailbox


async def test_items_come_out_in_the_order_they_went_in():
    box = Mailbox()
    for item in range(5):
        box.put_nowait(item)
    assert [await box.get() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert box.empty() and box.qsize() == 0


async def test_a_waiting_reader_wakes_up_when_an_item_arrives():
    box = Mailbox()
    reader = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    assert not reader.done()
    box.put("hello")
    assert await asyncio.wait_for(reader, 1) == "hello"


async def test_a_full_mailbox_refuses_instead_of_growing():
    box = Mailbox(capacity=2)
    assert box.put(1) and box.put(2)
    assert box.put(3) is False
    with pytest.raises(asyncio.QueueFull):
        box.put_nowait(3)
    assert [await box.get(), await box.get()] == [1, 2]


async def test_a_cancelled_reader_leaves_no_waiter_behind():
    box = Mailbox()
    reader = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert box.waiter is None
    box.put("kept")
    assert await box.get() == "kept"


async def test_an_item_the_waiting_reader_absorbs_never_wakes_it():
    box = Mailbox()
    box.absorb = lambda item: item == "absorbed"
    reader = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    assert box.put("absorbed")
    await asyncio.sleep(0)
    assert not reader.done() and box.empty()
    box.put("kept")
    assert await asyncio.wait_for(reader, 1) == "kept"


async def test_an_item_is_not_offered_while_others_are_queued_before_it():
    offered = []
    box = Mailbox()
    box.absorb = lambda item: offered.append(item) or True
    box.put("first")  # nobody waits: queued
    box.put("second")
    assert offered == []
    assert [await box.get(), await box.get()] == ["first", "second"]
