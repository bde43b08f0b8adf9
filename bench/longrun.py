"""``python -m bench.longrun l1|l3``: the reliability plan's long runs.

Benchmarks, not CI (issue 15): each starts its own Daphne the way
scripts/serve runs it (default settings, SQLite, in-memory channel layer;
bench/servers.py), drives it over loopback with real WebSocket clients
from this process, samples the server from /proc and /metrics as it goes,
and draws the samples as a PNG.

L1  10 000 cycles of connect, SignIn, one Offer to a partner that is always
    signed in (one of 16) and its Answer back (2 relays), close: clean and
    abrupt in turn; 4 cycles at a time. Sampled every 250 cycles.
L3  L0 for an hour: 100 pairs, each negotiating every 10 s (StartConnection,
    Offer, Answer, 10 IceCandidates each way). Sampled every 10 s.

Every sample is appended to ``<out>/<run>-samples.jsonl`` and flushed at
once, so a run that dies late still leaves its data; ``<run>.json`` (the
summary) and ``<run>.png`` are written at the end, and
``python -m bench.longrun plot <samples.jsonl>`` redraws a picture from
the samples alone. ``python -m bench.longrun probe --path /metrics``
measures what one GET leaves behind in an idle server (descriptors, RSS),
which the samples' own /metrics reads add to the curves.

Every relayed payload carries ``{pair, direction, seq, sent_at}`` (in the
SDP as an ``a=x-lr:`` line, in the candidate as its foundation), so a
frame that never arrives is counted as lost, a second arrival as a
duplicate and an earlier sequence number after a later one as reordered.
Latency is one clock: sender and receiver are the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import secrets
import sqlite3
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench import servers
from bench.system import (
    DRIVER_CORE,
    core_busy_seconds,
    cpu_seconds,
    fresh_source_addresses,
    raise_fd_limit,
    rss_kib,
    user_process_cpu,
)

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = servers.ROOT / "docs" / "long-runs"

# L0 (reliability-test-plan.md): 100 pairs, every 10 s, 10 ICE each way.
L0_PAIRS = 100
L0_PERIOD_SECONDS = 10.0
L0_ICE_PER_SIDE = 10
L3_SAMPLE_SECONDS = 10.0
L1_CYCLES = 10_000
L1_SAMPLE_CYCLES = 250
L1_WORKERS = 4
# The clients spread their Offers over several partners that stay signed in:
# one partner answering 4 workers (~300 cycles/s) would go over the default
# frame limit (50/s per socket, SECURITY.md) and be told rate_limited.
L1_PARTNERS = 16
# A frame not there this long after it was sent is counted as lost.
ANSWER_TIMEOUT_SECONDS = 10.0
# After the last frame: how long to wait for stragglers and for the server
# to clear closed sessions before the final sample.
DRAIN_SECONDS = 10.0
SETTLE_TIMEOUT_SECONDS = 30.0

MARK = re.compile(r"lr:(\d+):([ab]):(\d+):(\d+)")
SDP_LINES = (
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=msid-semantic: WMS stream",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:Kq3F",
    "a=ice-pwd:zK8sW0tXp4rF1nA7cQ2vB9yH",
    "a=ice-options:trickle",
    (
        "a=fingerprint:sha-256 3B:6F:9A:21:7C:44:D0:8E:5A:11:C2:9F:70:3E:B8:64:12:AA:5D:"
        "E9:07:CB:38:F1:9C:4D:62:80:1B:E3:57:A6"
    ),
    "a=setup:actpass",
    "a=mid:0",
    "a=sendrecv",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103",
    "c=IN IP4 0.0.0.0",
    "a=mid:1",
    "a=sendrecv",
    "a=rtcp-mux",
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 nack pli",
)
SDP = "\r\n".join(SDP_LINES)


def sdp(mark: str) -> str:
    """An SDP of about 600 bytes carrying the marker, as the app sends it."""
    return f"{SDP}\r\na=x-{mark}\r\n"


def candidate(mark: str) -> str:
    """The Android app's JSON-string candidate carrying the marker."""
    return json.dumps(
        {
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "sdp": f"candidate:{mark} 1 udp 2122260223 192.0.2.5 54321 typ host generation 0",
            "serverUrl": "",
            "adapterType": "UNKNOWN",
        }
    )


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(ns: float | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 3)


# -- the server ------------------------------------------------------------


@dataclass
class Server:
    """Our Daphne, with what is needed to read it from outside."""

    process: servers.ServerProcess
    database: Path
    metrics_token: str
    session_table: str | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.process.port}/"

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def metrics(self) -> dict[str, float]:
        """The gauges of /metrics that matter here."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.process.port}/metrics",
            headers={"Authorization": f"Bearer {self.metrics_token}"},
        )
        wanted = {"signaling_users_signed_in", "signaling_connections_open"}
        found: dict[str, float] = {}
        with urllib.request.urlopen(request, timeout=5) as response:
            for line in response.read().decode().splitlines():
                name, _, value = line.partition(" ")
                if name in wanted:
                    found[name] = float(value)
        return found

    def db_sessions(self) -> int | None:
        """Live-session rows (what the admin lists); None if unreadable."""
        try:
            with sqlite3.connect(
                f"file:{self.database}?mode=ro", uri=True, timeout=2
            ) as db:
                if self.session_table is None:
                    row = db.execute(
                        "SELECT name FROM sqlite_master WHERE type='table' "
                        "AND name LIKE '%livesession'"
                    ).fetchone()
                    self.session_table = row[0]
                return db.execute(
                    f"SELECT count(*) FROM {self.session_table}"
                ).fetchone()[0]
        except (sqlite3.Error, TypeError):
            return None


def start_server(run_dir: Path, extra_env: dict[str, str] | None = None) -> Server:
    """Daphne as scripts/serve runs it; only /metrics is switched on.

    servers.start_ours lifts the abuse limits for the throughput benchmark;
    the long runs keep every default (frame rate, caps, sign-in timeout).
    """
    database_url = servers.migrate(run_dir)
    token = secrets.token_urlsafe(24)
    env = servers.ours_environment(database_url)
    for key in servers.ABUSE_LIMITS_OFF:
        env.pop(key, None)
    env["SIGNALING_METRICS_TOKEN"] = token
    env.update(extra_env or {})
    port = servers.free_port()
    command = [
        str(servers.VENV_BIN / "daphne"),
        "-e",
        f"tcp:port={port}:interface=127.0.0.1:backlog=4096",
        *servers.DAPHNE_FLAGS,
        "signaling_site.asgi:application",
    ]
    process = servers._start(
        "ours", "signaling", command, port=port, log_path=run_dir / "ours.log", env=env
    )
    servers._wait_http(process)
    return Server(process=process, database=run_dir / "db.sqlite3", metrics_token=token)


# -- recording -------------------------------------------------------------


class Recorder:
    """Appends one JSON line per sample and flushes it at once."""

    def __init__(self, path: Path, header: dict) -> None:
        self.path = path
        self.samples: list[dict] = []
        # Open for the whole run; closed by close().
        self.file = open(path, "w")  # noqa: SIM115
        self._write({"header": header})

    def _write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def sample(self, record: dict) -> None:
        self.samples.append(record)
        self._write(record)

    def close(self) -> None:
        self.file.close()


@dataclass
class Tally:
    """What the clients saw, since the start and since the last sample."""

    sent: int = 0
    received: int = 0
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    misstamped: int = 0
    errors: Counter = field(default_factory=Counter)
    closes: Counter = field(default_factory=Counter)
    other_frames: Counter = field(default_factory=Counter)
    exceptions: Counter = field(default_factory=Counter)
    latencies: list[int] = field(default_factory=list)
    interval_latencies: list[int] = field(default_factory=list)

    def arrived(self, latency_ns: int) -> None:
        self.received += 1
        self.latencies.append(latency_ns)
        self.interval_latencies.append(latency_ns)


async def server_sample(server: Server, loop_start: float, cpu_before: dict) -> dict:
    """RSS, descriptors, sessions and CPU of the server right now."""
    pid = server.process.pid
    now = time.monotonic()
    try:
        gauges = await asyncio.to_thread(server.metrics)
    except OSError as error:
        gauges = {"error": repr(error)}
    server_cpu, driver_cpu = cpu_seconds(pid), cpu_seconds(os.getpid())
    # The machine is shared: CPU of processes this run did not start says
    # whether a latency spike is the server's or a neighbour's.
    others = user_process_cpu({pid, os.getpid()})
    cores = sum(core_busy_seconds().values())
    wall = max(now - cpu_before.get("wall", now), 1e-6)
    others_before = cpu_before.get("others", others)
    others_used = sum(
        max(0.0, used - others_before.get(other, 0.0)) for other, used in others.items()
    )
    record = {
        "t": round(now - loop_start, 2),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "rss_mb": round(rss_kib(pid) / 1024, 2),
        "fds": server.fds(),
        "sessions": gauges.get("signaling_users_signed_in"),
        "connections": gauges.get("signaling_connections_open"),
        "db_sessions": await asyncio.to_thread(server.db_sessions),
        "server_cpu": round(
            (server_cpu - cpu_before.get("server", server_cpu)) / wall, 3
        ),
        "driver_cpu": round(
            (driver_cpu - cpu_before.get("driver", driver_cpu)) / wall, 3
        ),
    }
    record["machine_busy"] = round((cores - cpu_before.get("cores", cores)) / wall, 3)
    record["others_cpu"] = round(others_used / wall, 3)
    if "error" in gauges:
        record["metrics_error"] = gauges["error"]
    cpu_before.update(
        wall=now, server=server_cpu, driver=driver_cpu, cores=cores, others=others
    )
    return record


def latency_fields(values: list[int], prefix: str) -> dict:
    return {
        f"{prefix}_n": len(values),
        f"{prefix}_p50_ms": ms(percentile(values, 0.50)),
        f"{prefix}_p99_ms": ms(percentile(values, 0.99)),
        f"{prefix}_max_ms": ms(max(values) if values else None),
    }


# -- L3: an hour at L0 -----------------------------------------------------


class L0Pairs:
    """100 pairs; A starts a negotiation every 10 s, B answers it."""

    def __init__(self, server: Server, tally: Tally) -> None:
        self.server = server
        self.tally = tally
        # (pair, direction, seq) -> send time, until it arrives.
        self.in_flight: dict[tuple[int, str, int], int] = {}
        self.last_seq: dict[tuple[int, str], int] = {}
        self.seq: Counter = Counter()
        # StartConnection carries no data: its send times wait in order.
        self.starts: dict[int, list[int]] = {}
        self.sockets: dict[tuple[int, str], ClientConnection] = {}
        self.readers: list[asyncio.Task] = []
        self.closing = False
        self.run_id = secrets.token_hex(3)

    def name(self, pair: int, side: str) -> str:
        return f"lr{self.run_id}-{pair}{side}"

    def mark(self, pair: int, direction: str) -> str:
        self.seq[pair, direction] += 1
        seq = self.seq[pair, direction]
        sent = time.monotonic_ns()
        self.in_flight[pair, direction, seq] = sent
        self.tally.sent += 1
        return f"lr:{pair}:{direction}:{seq}:{sent}"

    async def open(self) -> None:
        for pair in range(L0_PAIRS):
            for side in "ab":
                ws = await connect(
                    self.server.url,
                    compression=None,
                    ping_interval=None,
                    open_timeout=10,
                )
                await ws.send(
                    json.dumps({"type": "SignIn", "username": self.name(pair, side)})
                )
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if reply.get("type") != "SignedIn":
                    raise RuntimeError(f"sign-in of {self.name(pair, side)}: {reply}")
                self.sockets[pair, side] = ws
                self.readers.append(asyncio.create_task(self.read(pair, side, ws)))
            self.starts[pair] = []

    async def read(self, pair: int, side: str, ws: ClientConnection) -> None:
        peer = self.name(pair, "b" if side == "a" else "a")
        try:
            async for text in ws:
                now = time.monotonic_ns()
                frame = json.loads(text)
                kind = frame.get("type")
                if kind == "Error":
                    self.tally.errors[frame.get("code", "?")] += 1
                    continue
                if kind not in {"StartConnection", "Offer", "Answer", "IceCandidates"}:
                    self.tally.other_frames[kind] += 1
                    continue
                if frame.get("username") != peer:
                    self.tally.misstamped += 1
                if kind == "StartConnection":
                    if self.starts[pair]:
                        self.tally.arrived(now - self.starts[pair].pop(0))
                    else:
                        self.tally.duplicates += 1
                    continue
                self.arrived(frame, now)
                if kind == "Offer" and side == "b":
                    await self.answer(pair, ws, peer)
        except ConnectionClosed:
            pass
        finally:
            if not self.closing:
                self.tally.closes[f"unexpected {ws.close_code}"] += 1

    def arrived(self, frame: dict, now: int) -> None:
        found = MARK.search(str(frame.get("data")))
        if not found:
            self.tally.other_frames["unmarked"] += 1
            return
        pair, direction, seq = int(found[1]), found[2], int(found[3])
        sent = self.in_flight.pop((pair, direction, seq), None)
        if sent is None:
            self.tally.duplicates += 1
            return
        if seq < self.last_seq.get((pair, direction), 0):
            self.tally.reordered += 1
        self.last_seq[pair, direction] = max(
            seq, self.last_seq.get((pair, direction), 0)
        )
        self.tally.arrived(now - sent)

    async def send(self, ws: ClientConnection, frame: dict) -> None:
        try:
            await ws.send(json.dumps(frame))
        except ConnectionClosed as error:
            self.tally.exceptions[type(error).__name__] += 1

    async def answer(self, pair: int, ws: ClientConnection, peer: str) -> None:
        await self.send(
            ws, {"type": "Answer", "target": peer, "data": sdp(self.mark(pair, "b"))}
        )
        for _ in range(L0_ICE_PER_SIDE):
            await self.send(
                ws,
                {
                    "type": "IceCandidates",
                    "target": peer,
                    "data": candidate(self.mark(pair, "b")),
                },
            )

    async def negotiate(self, pair: int) -> None:
        ws, peer = self.sockets[pair, "a"], self.name(pair, "b")
        self.starts[pair].append(time.monotonic_ns())
        self.tally.sent += 1
        await self.send(ws, {"type": "StartConnection", "target": peer})
        await self.send(
            ws, {"type": "Offer", "target": peer, "data": sdp(self.mark(pair, "a"))}
        )
        for _ in range(L0_ICE_PER_SIDE):
            await self.send(
                ws,
                {
                    "type": "IceCandidates",
                    "target": peer,
                    "data": candidate(self.mark(pair, "a")),
                },
            )

    async def drive(self, pair: int, start: float, until: float) -> None:
        """Negotiate every period, pairs spread evenly over the period."""
        tick = start + pair * L0_PERIOD_SECONDS / L0_PAIRS
        while tick < until:
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            await self.negotiate(pair)
            tick += L0_PERIOD_SECONDS

    def overdue(self, older_than_ns: int) -> int:
        now = time.monotonic_ns()
        late = sum(now - sent > older_than_ns for sent in self.in_flight.values())
        late += sum(
            now - sent > older_than_ns
            for sends in self.starts.values()
            for sent in sends
        )
        return late

    async def close(self) -> None:
        self.closing = True
        await asyncio.gather(
            *(ws.close() for ws in self.sockets.values()), return_exceptions=True
        )
        await asyncio.gather(*self.readers, return_exceptions=True)


async def run_l3(server: Server, recorder: Recorder, minutes: float) -> dict:
    tally = Tally()
    pairs = L0Pairs(server, tally)
    cpu: dict = {}
    start = time.monotonic()
    recorder.sample({"phase": "before", **await server_sample(server, start, cpu)})
    await pairs.open()
    await asyncio.sleep(2)
    recorder.sample({"phase": "signed_in", **await server_sample(server, start, cpu)})
    drive_start = time.monotonic()
    until = drive_start + minutes * 60
    drivers = [
        asyncio.create_task(pairs.drive(p, drive_start, until)) for p in range(L0_PAIRS)
    ]
    next_sample = drive_start + L3_SAMPLE_SECONDS
    last = {"sent": 0, "received": 0}
    while time.monotonic() < until:
        await asyncio.sleep(max(0.0, next_sample - time.monotonic()))
        next_sample += L3_SAMPLE_SECONDS
        record = await server_sample(server, start, cpu)
        record.update(
            phase="run",
            sent=tally.sent - last["sent"],
            received=tally.received - last["received"],
            overdue_5s=pairs.overdue(5_000_000_000),
            errors=sum(tally.errors.values()),
            unexpected_closes=sum(tally.closes.values()),
            **latency_fields(tally.interval_latencies, "relay"),
        )
        last = {"sent": tally.sent, "received": tally.received}
        tally.interval_latencies = []
        recorder.sample(record)
    await asyncio.gather(*drivers)
    # Stragglers: whatever is still in flight after the drain is lost.
    drain_deadline = time.monotonic() + DRAIN_SECONDS
    while (
        pairs.in_flight or any(pairs.starts.values())
    ) and time.monotonic() < drain_deadline:
        await asyncio.sleep(0.1)
    tally.lost = len(pairs.in_flight) + sum(len(s) for s in pairs.starts.values())
    record = await server_sample(server, start, cpu)
    record.update(
        phase="drained",
        sent=tally.sent - last["sent"],
        received=tally.received - last["received"],
        **latency_fields(tally.interval_latencies, "relay"),
    )
    recorder.sample(record)
    await pairs.close()
    settled = await settle(server, expect_sessions=0)
    recorder.sample(
        {"phase": "closed", **await server_sample(server, start, cpu), **settled}
    )
    return summary(
        recorder.samples,
        tally,
        {
            "pairs": L0_PAIRS,
            "minutes": minutes,
            "period_s": L0_PERIOD_SECONDS,
            "ice_per_side": L0_ICE_PER_SIDE,
        },
    )


async def settle(server: Server, *, expect_sessions: int) -> dict:
    """Wait until the server's registry and the admin rows are back."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_TIMEOUT_SECONDS:
        try:
            gauges = await asyncio.to_thread(server.metrics)
        except OSError:
            gauges = {}
        rows = await asyncio.to_thread(server.db_sessions)
        if (
            gauges.get("signaling_users_signed_in") == expect_sessions
            and rows == expect_sessions
        ):
            break
        await asyncio.sleep(0.25)
    return {"settle_s": round(time.monotonic() - started, 2)}


# -- L1: 10 000 connect / sign-in / relay / close cycles ---------------------


class Cycles:
    """Workers that each repeat connect, SignIn, Offer -> Answer, close."""

    def __init__(self, server: Server, tally: Tally, cycles: int) -> None:
        self.server = server
        self.tally = tally
        self.cycles = cycles
        self.next_cycle = 0
        self.done = 0
        self.failed = 0
        self.cycle_latencies: list[int] = []
        self.interval_cycle_latencies: list[int] = []
        self.answers: dict[str, asyncio.Future] = {}
        self.run_id = secrets.token_hex(3)
        self.addresses = fresh_source_addresses()
        self.partners: list[ClientConnection] = []
        self.partner_readers: list[asyncio.Task] = []
        self.closing = False

    def partner_name(self, number: int) -> str:
        return f"lr{self.run_id}-partner{number % L1_PARTNERS}"

    async def open_partners(self) -> None:
        for number in range(L1_PARTNERS):
            ws = await connect(self.server.url, compression=None, ping_interval=None)
            await ws.send(
                json.dumps({"type": "SignIn", "username": self.partner_name(number)})
            )
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if reply.get("type") != "SignedIn":
                raise RuntimeError(f"partner sign-in: {reply}")
            self.partners.append(ws)
            self.partner_readers.append(asyncio.create_task(self.serve_partner(ws)))

    async def serve_partner(self, ws: ClientConnection) -> None:
        """The partner answers every Offer at once with its marker."""
        try:
            async for text in ws:
                now = time.monotonic_ns()
                frame = json.loads(text)
                kind = frame.get("type")
                if kind == "Offer":
                    found = MARK.search(str(frame.get("data")))
                    if found:
                        self.tally.arrived(now - int(found[4]))
                    else:
                        self.tally.other_frames["unmarked"] += 1
                    self.tally.sent += 1
                    await ws.send(
                        json.dumps(
                            {
                                "type": "Answer",
                                "target": frame["username"],
                                "data": sdp(f"lr:0:b:0:{time.monotonic_ns()}"),
                            }
                        )
                    )
                elif kind == "Error":
                    self.tally.errors[f"partner {frame.get('code')}"] += 1
                else:
                    # PeerLeft for every client that offered, then left.
                    self.tally.other_frames[f"partner {kind}"] += 1
        except ConnectionClosed:
            pass
        finally:
            if not self.closing:
                self.tally.closes[f"partner unexpected {ws.close_code}"] += 1

    async def cycle(self, number: int) -> None:
        started = time.monotonic_ns()
        name = f"lr{self.run_id}-c{number}"
        ws = await connect(
            self.server.url,
            compression=None,
            ping_interval=None,
            open_timeout=ANSWER_TIMEOUT_SECONDS,
            local_addr=(self.addresses[number % len(self.addresses)], 0),
        )
        try:
            await ws.send(json.dumps({"type": "SignIn", "username": name}))
            reply = json.loads(
                await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT_SECONDS)
            )
            if reply.get("type") != "SignedIn":
                self.tally.errors[
                    f"sign-in {reply.get('code', reply.get('type'))}"
                ] += 1
                return
            self.tally.sent += 1
            await ws.send(
                json.dumps(
                    {
                        "type": "Offer",
                        "target": self.partner_name(number),
                        "data": sdp(f"lr:{number}:a:1:{time.monotonic_ns()}"),
                    }
                )
            )
            while True:
                frame = json.loads(
                    await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT_SECONDS)
                )
                if frame.get("type") == "Answer":
                    found = MARK.search(str(frame.get("data")))
                    if frame.get("username") != self.partner_name(number):
                        self.tally.misstamped += 1
                    self.tally.arrived(time.monotonic_ns() - int(found[4]))
                    break
                if frame.get("type") == "Error":
                    self.tally.errors[frame.get("code", "?")] += 1
                    return
                self.tally.other_frames[frame.get("type")] += 1
            latency = time.monotonic_ns() - started
            self.cycle_latencies.append(latency)
            self.interval_cycle_latencies.append(latency)
            self.done += 1
        finally:
            if number % 2:
                # Abrupt: the TCP connection goes without a closing handshake.
                ws.transport.abort()
            else:
                await ws.close()
            self.tally.closes["abrupt" if number % 2 else "clean"] += 1

    async def worker(self) -> None:
        while self.next_cycle < self.cycles:
            number = self.next_cycle
            self.next_cycle += 1
            try:
                await self.cycle(number)
            except TimeoutError as error:
                # The Offer or its Answer did not come: a lost frame.
                self.tally.lost += 1
                self.tally.exceptions[type(error).__name__] += 1
                self.failed += 1
            except (OSError, ConnectionClosed, ValueError) as error:
                self.tally.exceptions[type(error).__name__] += 1
                self.failed += 1

    async def close(self) -> None:
        self.closing = True
        await asyncio.gather(
            *(ws.close() for ws in self.partners), return_exceptions=True
        )
        await asyncio.gather(*self.partner_readers, return_exceptions=True)


async def run_l1(server: Server, recorder: Recorder, cycles: int) -> dict:
    tally = Tally()
    runner = Cycles(server, tally, cycles)
    cpu: dict = {}
    start = time.monotonic()
    await runner.open_partners()
    await settle(server, expect_sessions=L1_PARTNERS)
    recorder.sample(
        {"phase": "before", "cycles": 0, **await server_sample(server, start, cpu)}
    )
    workers = [asyncio.create_task(runner.worker()) for _ in range(L1_WORKERS)]
    next_sample = L1_SAMPLE_CYCLES
    while not all(w.done() for w in workers):
        await asyncio.sleep(0.05)
        finished = runner.done + runner.failed
        if finished >= next_sample or all(w.done() for w in workers):
            next_sample += L1_SAMPLE_CYCLES
            record = await server_sample(server, start, cpu)
            record.update(
                phase="run",
                cycles=finished,
                failed=runner.failed,
                errors=sum(tally.errors.values()),
                lost=tally.lost,
                **latency_fields(tally.interval_latencies, "relay"),
                **latency_fields(runner.interval_cycle_latencies, "cycle"),
            )
            tally.interval_latencies = []
            runner.interval_cycle_latencies = []
            recorder.sample(record)
    for w in workers:
        w.result()
    settled = await settle(server, expect_sessions=L1_PARTNERS)
    recorder.sample(
        {
            "phase": "settled",
            "cycles": runner.done + runner.failed,
            **await server_sample(server, start, cpu),
            **settled,
        }
    )
    await runner.close()
    settled = await settle(server, expect_sessions=0)
    recorder.sample(
        {
            "phase": "closed",
            "cycles": runner.done + runner.failed,
            **await server_sample(server, start, cpu),
            **settled,
        }
    )
    result = summary(
        recorder.samples,
        tally,
        {
            "cycles": cycles,
            "workers": L1_WORKERS,
            "partners": L1_PARTNERS,
            "sample_every_cycles": L1_SAMPLE_CYCLES,
        },
    )
    result["cycles_completed"] = runner.done
    result["cycles_failed"] = runner.failed
    result["cycle_latency"] = {
        "p50_ms": ms(percentile(runner.cycle_latencies, 0.5)),
        "p99_ms": ms(percentile(runner.cycle_latencies, 0.99)),
        "max_ms": ms(max(runner.cycle_latencies, default=None)),
    }
    result["wall_s"] = round(time.monotonic() - start, 1)
    return result


# -- what one HTTP request leaves behind ------------------------------------


def probe_requests(path: str, requests: int, extra_env: dict[str, str]) -> dict:
    """Descriptors and RSS of an idle server before and after N GETs.

    The long runs read /metrics every sample; this tells how much of what
    they see the reading itself costs.
    """
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = BENCH_DIR / ".runs" / f"longrun-probe-{stamp}"
    run_dir.mkdir(parents=True)
    server = start_server(run_dir, extra_env)
    headers = {"Authorization": f"Bearer {server.metrics_token}"}
    url = f"http://127.0.0.1:{server.process.port}{path}"
    try:
        time.sleep(2)
        pid = server.process.pid
        before = {"fds": server.fds(), "rss_mb": rss_kib(pid) / 1024}
        for _ in range(requests):
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
            # A scraper's pace, not a flood: what each request leaves is
            # seen by the collector's once-a-second freeze in between.
            time.sleep(0.05)
        time.sleep(2)
        after = {"fds": server.fds(), "rss_mb": rss_kib(pid) / 1024}
    finally:
        server.process.stop()
    return {
        "path": path,
        "requests": requests,
        "env": extra_env,
        "fds_per_request": round((after["fds"] - before["fds"]) / requests, 3),
        "rss_kb_per_request": round(
            (after["rss_mb"] - before["rss_mb"]) * 1024 / requests, 1
        ),
        "before": before,
        "after": after,
    }


# -- summary and picture -----------------------------------------------------


def rss_slope(samples: list[dict]) -> float | None:
    """Least-squares growth of RSS over the run, in MB per 10 minutes."""
    if len(samples) < 2:
        return None
    ts = [s["t"] for s in samples]
    mean_t = sum(ts) / len(ts)
    mean_r = sum(s["rss_mb"] for s in samples) / len(samples)
    spread = sum((t - mean_t) ** 2 for t in ts)
    if not spread:
        return None
    slope = sum((s["t"] - mean_t) * (s["rss_mb"] - mean_r) for s in samples) / spread
    return round(slope * 600, 3)


def summary(samples: list[dict], tally: Tally, load: dict) -> dict:
    run = [s for s in samples if s.get("phase") == "run"]
    rss = [s["rss_mb"] for s in samples]
    intervals = [s for s in run if s.get("relay_p99_ms") is not None]
    worst = max(intervals, key=lambda s: s["relay_p99_ms"], default=None)
    return {
        "load": load,
        "rss_slope_mb_per_10min": rss_slope(run),
        "rss_mb": {
            "start": samples[0]["rss_mb"],
            "first_run_sample": run[0]["rss_mb"] if run else None,
            "end": samples[-1]["rss_mb"],
            "max": max(rss),
            "min": min(rss),
        },
        "fds": {
            "start": samples[0]["fds"],
            "end": samples[-1]["fds"],
            "max": max(s["fds"] for s in samples),
        },
        "sessions": {
            "start": samples[0]["sessions"],
            "end": samples[-1]["sessions"],
            "max": max((s["sessions"] or 0) for s in samples),
            "db_end": samples[-1]["db_sessions"],
        },
        "relay_latency": {
            "frames": len(tally.latencies),
            "p50_ms": ms(percentile(tally.latencies, 0.5)),
            "p99_ms": ms(percentile(tally.latencies, 0.99)),
            "max_ms": ms(max(tally.latencies, default=None)),
            "worst_interval": None
            if worst is None
            else {
                "t": worst["t"],
                "cycles": worst.get("cycles"),
                "p50_ms": worst["relay_p50_ms"],
                "p99_ms": worst["relay_p99_ms"],
                "max_ms": worst["relay_max_ms"],
            },
            "interval_p99_ms_min_median_max": None
            if not intervals
            else [
                min(s["relay_p99_ms"] for s in intervals),
                percentile([s["relay_p99_ms"] for s in intervals], 0.5),
                max(s["relay_p99_ms"] for s in intervals),
            ],
        },
        "frames": {
            "sent": tally.sent,
            "received": tally.received,
            "lost": tally.lost,
            "duplicates": tally.duplicates,
            "reordered": tally.reordered,
            "misstamped": tally.misstamped,
        },
        "errors": dict(tally.errors),
        "closes": dict(tally.closes),
        "exceptions": dict(tally.exceptions),
        "other_frames": dict(tally.other_frames),
        "server_cpu_max": max((s.get("server_cpu") or 0) for s in run) if run else None,
        "driver_cpu_max": max((s.get("driver_cpu") or 0) for s in run) if run else None,
    }


def plot(samples_path: Path, png_path: Path) -> None:
    """Draw RSS, descriptors, sessions and latency against time or cycles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["lines.marker"] = "."
    plt.rcParams["lines.markersize"] = 3

    lines = [json.loads(line) for line in samples_path.read_text().splitlines() if line]
    header = lines[0]["header"]
    samples = [s for s in lines[1:] if "rss_mb" in s]
    by_cycles = header["run"] == "l1"
    if by_cycles:
        x = [s.get("cycles", 0) for s in samples]
        xlabel = "cycles completed"
    else:
        x = [s["t"] / 60 for s in samples]
        xlabel = "minutes since start"
    panels = 6 if by_cycles else 5
    fig, axes = plt.subplots(panels, 1, sharex=True, figsize=(9, 2.3 * panels))
    axes[0].plot(x, [s["rss_mb"] for s in samples], color="tab:blue")
    axes[0].set_ylabel("RSS (MB)")
    axes[1].plot(x, [s["fds"] for s in samples], color="tab:orange")
    axes[1].set_ylabel("open fds")
    axes[2].plot(x, [s["sessions"] for s in samples], label="signed in (/metrics)")
    axes[2].plot(x, [s["db_sessions"] for s in samples], "--", label="admin rows (DB)")
    axes[2].set_ylabel("live sessions")
    axes[2].legend(fontsize=8)
    timed = [(xi, s) for xi, s in zip(x, samples) if s.get("relay_p50_ms") is not None]
    axes[3].plot(
        [xi for xi, _ in timed], [s["relay_p50_ms"] for _, s in timed], label="p50"
    )
    axes[3].plot(
        [xi for xi, _ in timed], [s["relay_p99_ms"] for _, s in timed], label="p99"
    )
    axes[3].set_ylabel("relay latency (ms)")
    axes[3].legend(fontsize=8)
    cpu = axes[4]
    cpu.plot(x, [s["server_cpu"] for s in samples], label="server")
    cpu.plot(x, [s["driver_cpu"] for s in samples], label="clients (this process)")
    if any("others_cpu" in s for s in samples):
        cpu.plot(x, [s.get("others_cpu") for s in samples], label="everything else")
    machine = samples_path.with_name(f"{header['run']}-machine.jsonl")
    if not by_cycles and machine.exists():
        # Read by a side-car for runs made before the samples carried it.
        started = datetime.datetime.fromisoformat(samples[0]["time"])
        rows = [json.loads(line) for line in machine.read_text().splitlines() if line]
        cpu.plot(
            [
                (datetime.datetime.fromisoformat(r["time"]) - started).total_seconds()
                / 60
                for r in rows
            ],
            [r["others_cpu"] for r in rows],
            label="everything else (side-car)",
            alpha=0.7,
        )
    cpu.set_ylabel("CPU (cores)")
    cpu.legend(fontsize=8, loc="upper left", framealpha=0.9)
    if by_cycles:
        timed = [
            (xi, s) for xi, s in zip(x, samples) if s.get("cycle_p50_ms") is not None
        ]
        axes[5].plot(
            [xi for xi, _ in timed], [s["cycle_p50_ms"] for _, s in timed], label="p50"
        )
        axes[5].plot(
            [xi for xi, _ in timed], [s["cycle_p99_ms"] for _, s in timed], label="p99"
        )
        axes[5].set_ylabel("cycle (ms)")
        axes[5].legend(fontsize=8)
    # Latency spans 1 ms to seconds on a shared machine: log scale.
    latency_axes = [axes[3], axes[5]] if by_cycles else [axes[3]]
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax in latency_axes:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
    axes[-1].set_xlabel(xlabel)
    title = {
        "l1": f"L1: {header.get('cycles')} connect/sign-in/relay/close cycles",
        "l3": f"L3: L0 ({L0_PAIRS} pairs every {L0_PERIOD_SECONDS:g} s) for "
        f"{header.get('minutes')} min",
    }[header["run"]]
    fig.suptitle(
        f"{title}\nDaphne {header.get('commit')}, {header.get('date')}", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


# -- command line ------------------------------------------------------------


def cpu_model() -> str:
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


async def run(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = BENCH_DIR / ".runs" / f"longrun-{args.run}-{stamp}"
    run_dir.mkdir(parents=True)
    header = {
        "run": args.run,
        "date": datetime.date.today().isoformat(),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": servers.source_commit(servers.ROOT),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "command": " ".join([".venv/bin/python", "-m", "bench.longrun", *sys.argv[1:]]),
        "run_dir": str(run_dir.relative_to(servers.ROOT)),
    }
    if args.run == "l1":
        header["cycles"] = args.cycles
    else:
        header["minutes"] = args.minutes
    recorder = Recorder(out / f"{args.run}-samples.jsonl", header)
    server = start_server(run_dir)
    header["server_pid"] = server.process.pid
    try:
        if args.run == "l1":
            budget = 60 * 60
            result = await asyncio.wait_for(
                run_l1(server, recorder, args.cycles), budget
            )
        else:
            budget = args.minutes * 60 + 5 * 60
            result = await asyncio.wait_for(
                run_l3(server, recorder, args.minutes), budget
            )
    finally:
        recorder.close()
        alive = server.process.alive()
        server.process.stop()
    result["header"] = header
    result["server_alive_at_end"] = alive
    result["server_log"] = {
        "tracebacks": server.process.count_in_log("Traceback"),
        "exceptions_inside_application": server.process.count_in_log(
            "Exception inside application"
        ),
        "lines": server.process.count_in_log("\n"),
    }
    (out / f"{args.run}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(out / f"{args.run}-samples.jsonl", out / f"{args.run}.png")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.longrun",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", choices=["l1", "l3", "plot", "probe"])
    parser.add_argument("samples", nargs="?", help="plot: the samples .jsonl to draw")
    parser.add_argument("--minutes", type=float, default=60.0, help="l3: how long (60)")
    parser.add_argument(
        "--cycles", type=int, default=L1_CYCLES, help="l1: how many (10000)"
    )
    parser.add_argument(
        "--out",
        default=str(DEFAULT_OUT),
        help="directory for <run>-samples.jsonl, <run>.json, <run>.png",
    )
    parser.add_argument(
        "--path", default="/metrics", help="probe: the URL path to GET (/metrics)"
    )
    parser.add_argument("--requests", type=int, default=300, help="probe: how many")
    parser.add_argument(
        "--env", action="append", default=[], help="probe: KEY=VALUE for the server"
    )
    args = parser.parse_args(argv)
    if args.run == "probe":
        extra = dict(item.split("=", 1) for item in args.env)
        print(json.dumps(probe_requests(args.path, args.requests, extra)))
        return 0
    if args.run == "plot":
        samples = Path(args.samples)
        plot(samples, samples.with_name(samples.name.replace("-samples.jsonl", ".png")))
        return 0
    raise_fd_limit(10_000)
    # The server runs on core 0 (bench/servers.py); the clients take core 1.
    os.sched_setaffinity(0, {DRIVER_CORE})
    result = asyncio.run(run(args))
    print(json.dumps({k: v for k, v in result.items() if k != "header"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
