"""Stopping on SIGTERM: every client is told to reconnect elsewhere, with a
frame and a close code, in batches spread over the drain window."""

import asyncio
import re
import signal
import statistics
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import redis
import websockets

from signaling.ws.shutdown import drain_batch_size
from tests.clients import Client
from tests.end_to_end.test_scale_out import eventually, live_session
from tests.servers import ROOT


async def test_a_stopping_single_instance_tells_every_client_to_reconnect(start_server):
    server = start_server()  # no REDIS_URL: Channels' in-memory layer
    clients = []
    for name in ("term-alice", "term-bob"):
        client = await Client.connect(server.ws_url)
        assert (await client.sign_in(name))["type"] == "SignedIn"
        clients.append(client)
    # One connected socket that never signed in is told as well.
    clients.append(await Client.connect(server.ws_url))
    server.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    for client in clients:
        frame = await client.receive_json(timeout=5)
        assert frame["type"] == "Reconnect", frame
        assert await client.wait_closed(timeout=5) == 4003
    told_after = time.monotonic() - stopped_at
    assert await asyncio.to_thread(server.process.wait, 10) == 0
    assert "Traceback" not in server.log()
    print(f"SIGTERM, one instance: 3 clients told to reconnect in {told_after:.2f}s")


@pytest.mark.parametrize(
    ("untold", "seconds_left", "batch"),
    [
        (0, 30, 0),
        (1, 30, 1),
        # At least 100 a second (10 a tick): a small instance is quick.
        (3, 30, 3),
        (200, 30, 10),
        # Spread evenly over what is left: 300 ticks.
        (6000, 30, 20),
        (6001, 30, 21),
        (20000, 10, 200),
        # The window is over: everyone left, at once.
        (500, 0.1, 500),
        (500, 0, 500),
        (500, -2, 500),
    ],
)
def test_a_drain_spreads_its_batches_over_the_window(untold, seconds_left, batch):
    assert drain_batch_size(untold, seconds_left) == batch


def render_shutdown_delay() -> int:
    """render.yaml's maxShutdownDelaySeconds: SIGTERM to SIGKILL on Render."""
    text = (ROOT / "render.yaml").read_text()
    match = re.search(r"^\s+maxShutdownDelaySeconds:\s*(\d+)\s*$", text, re.MULTILINE)
    assert match, "render.yaml sets no maxShutdownDelaySeconds"
    return int(match.group(1))


@pytest.fixture
def instances(start_server, redis_url, shared_database_url):
    """Two real Daphne processes sharing a real Redis and database."""
    return [
        start_server(database_url=shared_database_url, REDIS_URL=redis_url)
        for _ in range(2)
    ]


class AppClient:
    """A client that behaves like the Android app: told to reconnect (a
    Reconnect frame, then the close), it connects to the other instance and
    signs in again under the same name."""

    def __init__(self, username: str, home, elsewhere) -> None:
        self.username = username
        self.home = home
        self.elsewhere = elsewhere
        self.client: Client | None = None
        self.told_at: float | None = None
        self.closed_at: float | None = None
        self.close_code: int | None = None
        self.back_at: float | None = None

    async def sign_in(self) -> None:
        self.client = await Client.connect(self.home.ws_url)
        reply = await self.client.sign_in(self.username, timeout=15)
        assert reply["type"] == "SignedIn", reply

    async def follow(self) -> None:
        """Read until the server closes, then sign in on the other instance."""
        try:
            while True:
                frame = await self.client.receive_json(timeout=120)
                if frame["type"] == "Reconnect":
                    self.told_at = time.monotonic()
        except websockets.ConnectionClosed:
            pass
        self.closed_at = time.monotonic()
        self.close_code = self.client.connection.close_code
        self.client = await Client.connect(self.elsewhere.ws_url)
        reply = await self.client.sign_in(self.username, timeout=15)
        assert reply["type"] == "SignedIn", (self.username, reply)
        self.back_at = time.monotonic()


def stop_like_render(server, grace: float) -> tuple[float, bool]:
    """SIGTERM, then SIGKILL after ``grace`` seconds if still running.
    Returns when the process ended, and whether it had to be killed."""
    server.signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=grace)
        killed = False
    except subprocess.TimeoutExpired:
        server.signal(signal.SIGKILL)
        server.process.wait()
        killed = True
    return time.monotonic(), killed


def seconds(values: list[float]) -> str:
    values = sorted(values)
    return f"median {statistics.median(values):.2f}s, max {values[-1]:.2f}s"


DRAINED_CLIENTS = 200


async def test_on_renders_timing_every_client_moves_to_the_other_instance(
    instances, redis_url, shared_database_url
):
    a, b = instances
    grace = render_shutdown_delay()
    clients = [AppClient(f"drain-{n}", a, b) for n in range(DRAINED_CLIENTS)]
    for client in clients:
        await client.sign_in()
    store = redis.Redis.from_url(redis_url)
    assert all(
        f":{a.pid}:" in store.hget(f"signaling:user:{c.username}", "process").decode()
        for c in clients
    )
    following = [asyncio.create_task(client.follow()) for client in clients]

    stopped_at = time.monotonic()
    ended_at, killed = await asyncio.to_thread(stop_like_render, a, grace)
    await asyncio.wait_for(asyncio.gather(*following), grace)

    # A left by itself, well before the platform's SIGKILL.
    assert not killed
    assert a.process.returncode == 0
    assert "Traceback" not in a.log()
    # Every client was told (frame, then close code) while A still ran, and
    # was signed in again on B before the SIGKILL would have come.
    for client in clients:
        assert client.told_at is not None, client.username
        assert client.close_code == 4003, (client.username, client.close_code)
        assert client.told_at <= client.closed_at <= ended_at
        assert client.back_at - stopped_at < grace
    # No name points at the dead instance: Redis and the admin rows say B.
    for client in clients:
        holder = store.hget(f"signaling:user:{client.username}", "process")
        assert f":{b.pid}:" in holder.decode(), (client.username, holder)
    assert not [
        key
        for key in store.scan_iter("signaling:user:*")
        if f":{a.pid}:" in store.hget(key, "process").decode()
    ]

    def rows_on_b() -> bool:
        return all(
            (live_session(shared_database_url, c.username) or ("", 0))[1] == b.pid
            for c in clients
        )

    await eventually(rows_on_b, timeout=10)
    # Relaying between the moved clients works, each to its own addressee.
    pairs = list(zip(clients[::2], clients[1::2]))
    await asyncio.gather(
        *(
            sender.client.send_json(
                {"type": "Offer", "target": receiver.username, "data": sender.username}
            )
            for sender, receiver in pairs
        )
    )
    for sender, receiver in pairs:
        frame = await receiver.client.receive_json(timeout=10)
        assert (frame["type"], frame["username"], frame["data"]) == (
            "Offer",
            sender.username,
            sender.username,
        )
    assert await clients[0].client.receive_nothing()

    told = [c.told_at - stopped_at for c in clients]
    offline = [c.back_at - c.closed_at for c in clients]
    print(
        f"SIGTERM with {DRAINED_CLIENTS} clients: all told within {max(told):.2f}s, "
        f"process exited after {ended_at - stopped_at:.2f}s (SIGKILL at {grace}s); "
        f"each client offline {seconds(offline)}; all back on the other "
        f"instance {max(c.back_at for c in clients) - stopped_at:.2f}s after SIGTERM"
    )
    for client in clients:
        await client.client.close()


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


async def test_a_draining_instance_is_unready_alive_and_sends_newcomers_elsewhere(
    instances,
):
    a, b = instances
    # Enough connections to keep the drain going for a few seconds.
    waiting = [await Client.connect(a.ws_url) for _ in range(400)]
    a.signal(signal.SIGTERM)

    await eventually(lambda: get_status(a.http_url + "/readyz") == 503, timeout=5)
    assert get_status(a.http_url + "/healthz") == 503
    assert get_status(a.http_url + "/livez") == 200
    newcomer = await Client.connect(a.ws_url)
    frame = await newcomer.receive_json()
    assert frame["type"] == "Reconnect"
    assert frame["data"] == {"reason": "server_stopping"}
    assert await newcomer.wait_closed() == 4003
    assert a.process.poll() is None, "the drain ended before the checks"
    assert await asyncio.to_thread(a.process.wait, 30) == 0
    for client in waiting:
        assert (await client.receive_json())["type"] == "Reconnect"
        assert await client.wait_closed() == 4003
    assert get_status(b.http_url + "/readyz") == 200
