"""Daphne's reactor runs on uvloop: moved before it starts, with what was
registered on asyncio's loop, and kept on asyncio's loop when asked."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import uvloop
from twisted.internet.asyncioreactor import AsyncioSelectorReactor

from signaling.speedups import twisted_uvloop as event_loop
from tests.clients import Client


def test_a_reactor_moved_to_uvloop_runs_earlier_timers_and_calls_from_threads():
    old = asyncio.new_event_loop()
    reactor = AsyncioSelectorReactor(old)
    fired = []
    reactor.callLater(0.05, fired.append, "timer set before the move")
    new = uvloop.new_event_loop()
    event_loop._move(reactor, old, new)
    assert old.is_closed() and reactor._asyncioEventloop is new
    # A call from another thread wakes the reactor through its waker, which
    # was registered on the old loop.
    threading.Timer(0.1, reactor.callFromThread, (fired.append, "from a thread")).start()
    reactor.callLater(0.5, reactor.stop)
    reactor.run(installSignalHandlers=False)
    assert fired == ["timer set before the move", "from a thread"]
    new.close()


def test_the_thread_pool_daphne_may_give_its_loop_moves_with_it():
    old = asyncio.new_event_loop()
    pool = ThreadPoolExecutor(max_workers=2)
    old.set_default_executor(pool)
    reactor = AsyncioSelectorReactor(old)
    new = uvloop.new_event_loop()
    event_loop._move(reactor, old, new)
    assert new.run_until_complete(new.run_in_executor(None, lambda: "ran")) == "ran"
    assert not pool._shutdown
    pool.shutdown()
    new.close()


@pytest.mark.parametrize("choice", ["uvloop", "asyncio"])
async def test_daphne_serves_on_the_chosen_loop(start_server, choice):
    server = start_server(SIGNALING_EVENT_LOOP=choice)
    client = await Client.connect(server.ws_url)
    assert (await client.sign_in(f"loop-{choice}"))["type"] == "SignedIn"
    await client.close()
    on_uvloop = "event loop: uvloop" in server.log()
    assert on_uvloop is (choice == "uvloop")


def test_nothing_is_moved_when_asked_for_asyncio():
    assert event_loop.apply("asyncio") is False
