"""Count the instructions our server spends per operation, under callgrind.

    .venv/bin/python -m bench.instructions [--baseline REV] [--commit REV]
        [--protocol app|peerjs|both]

Wall-clock figures on a shared machine move between runs of the same
code far more than instruction counts do (valgrind counts what the process
executes, whatever else the machine does, once timers are taken off as
below; docs/performance.md, "Notes on method", has the spreads measured).
So a change to per-operation cost is best judged here, by the mean of
several same-run pairs (``--baseline``), and its effect on throughput then
confirmed with bench/run.

Starts our server under ``valgrind --tool=callgrind`` exactly as the
benchmark does (same Daphne flags and settings, SQLite), warms it up, then
for each workload zeroes the counters, runs it from this process and reads
the total: 200 sign-ins (connect, SignIn, close), 1000 relayed ICE frames
between one pair, 100 full handshakes (two sign-ins, StartConnection, Offer,
Answer, 4 ICE each way, two closes), 1000 keep-alives on one connection (a
WebSocket ping and its pong). Timers (connection reaping, heartbeats, the
collector) run per second whatever the load: their rate is measured idle, in
a window before and one after the workloads, and their share of each
workload's wall time taken off, so that a slower run does not count as
costlier code (``background/s`` in the output). Prints
instructions per operation, and with --baseline the same for that revision
measured in the same run, and the ratio. Needs valgrind (Debian package).
Only user-space instructions count: system calls are not measured.

``--protocol peerjs`` runs the same workloads in the PeerJS protocol at
``/peerjs`` (a sign-in is a connect with ``?key&id&token`` answered by
``OPEN``; relays are ``CANDIDATE`` frames with the peerjs client's object
payload; a handshake has no StartConnection; a keep-alive is a HEARTBEAT
frame followed by the same ping), ``both`` runs the two against one server
and prints PeerJS/app ratios: issue 17 wants each within 10 %. A
keep-alive's ratio is not one of those (the PeerJS row pays for a frame and a
ping); its difference is what a HEARTBEAT costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import websockets

from bench.cli import export_commit, prepare_tool_run
from bench.servers import DAPHNE_FLAGS, VENV_BIN, migrate, ours_environment, source_commit
from bench.system import free_port

SDP = "v=0\r\n" + "a=candidate:1 1 udp 2122260223 192.168.1.7 54400 typ host\r\n" * 18
CANDIDATE = (
    '{"sdpMid":"0","sdpMLineIndex":0,"candidate":"candidate:842163049 1 udp '
    '1677729535 192.168.1.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0"}'
)
# What the peerjs client (1.x) sends: objects, with its connection's id.
PEERJS_CANDIDATE = {
    "candidate": {
        "candidate": "candidate:842163049 1 udp 1677729535 192.168.1.7 46154 typ "
        "srflx raddr 0.0.0.0 rport 0 generation 0",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    },
    "type": "data",
    "connectionId": "dc_bench0000000",
}
WORKLOADS = {"sign-ins": 200, "relays": 1000, "handshakes": 100, "keep-alives": 1000}
PROTOCOLS = ("app", "peerjs")
# Byte for byte what the peerjs client sends: JSON.stringify, compact, with
# its key order (the server reads that layout without a full parse).
HEARTBEAT = json.dumps({"type": "HEARTBEAT"}, separators=(",", ":"))


class _App:
    """The app protocol: SignIn after connecting, {type, target, data}."""

    def __init__(self, base: str) -> None:
        self.url = base + "/"

    async def signed_in(self, name: str, address: str = "127.0.0.2"):
        ws = await websockets.connect(self.url, local_addr=(address, 0), compression=None)
        await ws.send(json.dumps({"type": "SignIn", "username": name}))
        await ws.recv()
        return ws

    async def start(self, sender, receiver, target: str) -> None:
        await sender.send(json.dumps({"type": "StartConnection", "target": target}))
        await receiver.recv()

    async def exchange(self, sender, receiver, kind: str, target: str, data) -> None:
        kind = {"offer": "Offer", "answer": "Answer", "ice": "IceCandidates"}[kind]
        await sender.send(json.dumps({"type": kind, "target": target, "data": data}))
        await receiver.recv()

    def sdp(self, kind: str):
        return SDP

    def candidate(self, n: int | None = None):
        return CANDIDATE if n is None else f"c{n}"

    async def keep_alive(self, ws) -> None:
        # Daphne pings app clients and Autobahn handles the pong; a ping
        # from the client costs the server the same frame's work.
        await (await ws.ping())


class _PeerJS(_App):
    """The PeerJS protocol: id and token in the query, OPEN, {type, dst, payload}."""

    def __init__(self, base: str) -> None:
        self.base = base

    async def signed_in(self, name: str, address: str = "127.0.0.2"):
        url = f"{self.base}/peerjs?key=peerjs&id={name}&token=t{name}"
        ws = await websockets.connect(url, local_addr=(address, 0), compression=None)
        await ws.recv()
        return ws

    async def start(self, sender, receiver, target: str) -> None:
        pass  # PeerJS has no StartConnection

    async def exchange(self, sender, receiver, kind: str, target: str, data) -> None:
        kind = {"offer": "OFFER", "answer": "ANSWER", "ice": "CANDIDATE"}[kind]
        frame = {"type": kind, "payload": data, "dst": target}
        await sender.send(json.dumps(frame, separators=(",", ":")))
        await receiver.recv()

    def sdp(self, kind: str):
        return {"sdp": {"type": kind, "sdp": SDP}, "type": "data",
                "connectionId": "dc_bench0000000", "browser": "node"}

    def candidate(self, n: int | None = None):
        if n is None:
            return PEERJS_CANDIDATE
        return PEERJS_CANDIDATE | {"candidate": PEERJS_CANDIDATE["candidate"] | {"sdpMid": str(n)}}

    async def keep_alive(self, ws) -> None:
        # The peerjs client's HEARTBEAT (every 5 s), then the app's ping: it
        # makes each HEARTBEAT arrive in a read of its own, as in real life.
        await ws.send(HEARTBEAT)
        await super().keep_alive(ws)


async def run_workload(base: str, protocol: str, kind: str, count: int, tag: str) -> None:
    client = _PeerJS(base) if protocol == "peerjs" else _App(base)
    tag = tag + protocol[0]
    if kind == "sign-ins":
        for n in range(count):
            ws = await client.signed_in(f"s{tag}{n}", f"127.0.0.{2 + n % 8}")
            await ws.close()
    elif kind == "relays":
        a, b = await client.signed_in(f"a{tag}"), await client.signed_in(f"b{tag}")
        for _ in range(count):
            await client.exchange(a, b, "ice", f"b{tag}", client.candidate())
        await a.close()
        await b.close()
    elif kind == "handshakes":
        for n in range(count):
            name_a, name_b = f"ha{tag}{n}", f"hb{tag}{n}"
            a, b = await client.signed_in(name_a), await client.signed_in(name_b)
            await client.start(a, b, name_b)
            await client.exchange(a, b, "offer", name_b, client.sdp("offer"))
            await client.exchange(b, a, "answer", name_a, client.sdp("answer"))
            for k in range(4):
                await client.exchange(a, b, "ice", name_b, client.candidate(k))
                await client.exchange(b, a, "ice", name_a, client.candidate(k))
            await a.close()
            await b.close()
    elif kind == "keep-alives":
        ws = await client.signed_in(f"k{tag}")
        for _ in range(count):
            await client.keep_alive(ws)
        await asyncio.sleep(0.5)  # the last HEARTBEAT may still be queued
        await ws.close()


def _total_instructions(pid: int, output: Path) -> int:
    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
    dumps = sorted(output.parent.glob(output.name + ".*"), key=lambda p: p.stat().st_mtime)
    for line in dumps[-1].read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary in {dumps[-1]}")


def _zero(pid: int) -> None:
    subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=True)


def _background_rate(pid: int, output: Path, seconds: float) -> float:
    """Instructions per second the idle server spends on its timers
    (connection reaping, heartbeats, the collector)."""
    _zero(pid)
    started = time.monotonic()
    time.sleep(seconds)
    total = _total_instructions(pid, output)
    return total / (time.monotonic() - started)


def measure(
    source: Path, run_dir: Path, label: str, scale: float = 1.0,
    protocols: tuple[str, ...] = ("app",),
) -> dict[str, dict[str, int]]:
    """Instructions per operation of the server code in ``source``, by protocol."""
    workloads = {kind: max(1, round(count * scale)) for kind, count in WORKLOADS.items()}
    (run_dir / label).mkdir(exist_ok=True)
    database_url = migrate(run_dir / label, source)
    port = free_port()
    output = run_dir / label / "callgrind.out"
    command = [
        # Not instrumented until the server answers: starting Django under
        # full instrumentation takes minutes; nothing before is counted.
        "valgrind", "--tool=callgrind", "--instr-atstart=no",
        f"--callgrind-out-file={output}",
        str(VENV_BIN / "python"), "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
        *DAPHNE_FLAGS, "signaling_site.asgi:application",
    ]
    log = open(run_dir / label / "server.log", "wb")
    env = ours_environment(database_url) | {"PYTHONPATH": str(source)}
    server = subprocess.Popen(command, cwd=source, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"ws://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                asyncio.run(run_workload(base, "app", "sign-ins", 1, "ready"))
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"server under valgrind did not start: {log.name}")
                time.sleep(1)
        subprocess.run(["callgrind_control", "-i", "on", str(server.pid)],
                       capture_output=True, check=True)
        for protocol in protocols:  # warm-up: imports, caches
            for kind, count in workloads.items():
                asyncio.run(run_workload(base, protocol, kind, max(1, count // 20), "warm"))
        time.sleep(1)
        idle_seconds = 10 if scale >= 1 else 2
        background_before = _background_rate(server.pid, output, idle_seconds)
        totals: dict[tuple[str, str], tuple[int, float]] = {}
        for protocol in protocols:
            for kind, count in workloads.items():
                _zero(server.pid)
                started = time.monotonic()
                asyncio.run(run_workload(base, protocol, kind, count, "m"))
                elapsed = time.monotonic() - started
                totals[protocol, kind] = (_total_instructions(server.pid, output), elapsed)
        # Timers run per second, not per operation: what they spend idle
        # (the mean of a window before and one after the workloads, as a
        # 1 s timer lands 10 or 11 times in 10 s) over each workload's wall
        # time is taken off, or a slower run (valgrind is far slower than
        # the real thing, more so on a loaded machine) would count as
        # costlier code.
        background = (background_before + _background_rate(server.pid, output, idle_seconds)) / 2
        per_operation: dict[str, dict[str, int]] = {}
        for (protocol, kind), (total, elapsed) in totals.items():
            net = max(0.0, total - background * elapsed)
            per_operation.setdefault(protocol, {})[kind] = round(net / workloads[kind])
        for row in per_operation.values():
            row["background/s"] = round(background)
        return per_operation
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _row_label(label: str, protocol: str) -> str:
    # The app protocol's rows keep their old names ("measured", "baseline").
    return label if protocol == "app" else f"{label} {protocol}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commit", help="measure this revision (default: the working tree)")
    parser.add_argument("--baseline", help="also measure this revision, for the ratio")
    parser.add_argument("--protocol", choices=("app", "peerjs", "both"), default="app",
                        help="the wire protocol to drive (both: the two, and their ratio)")
    parser.add_argument("--smoke", action="store_true",
                        help="a few operations of each kind (the test suite's check)")
    args = parser.parse_args(argv)
    scale = 0.05 if args.smoke else 1.0
    protocols = PROTOCOLS if args.protocol == "both" else (args.protocol,)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    run_dir, source = prepare_tool_run("instructions", args.commit)
    sources = {"measured": source}
    if args.baseline:
        (run_dir / "baseline").mkdir()
        sources["baseline"] = export_commit(args.baseline, run_dir / "baseline")
    results: dict[str, dict] = {}
    for label, tree in sources.items():
        by_protocol = measure(tree, run_dir, label, scale, protocols)
        for protocol, row in by_protocol.items():
            results[_row_label(label, protocol)] = {
                "source": source_commit(tree), "protocol": protocol, **row
            }
    columns = [*WORKLOADS, "background/s"]
    print(f"{'instructions per operation':34}" + "".join(f"{k:>14}" for k in columns))
    for label, row in results.items():
        print(f"{label + ' ' + row['source']:34}" + "".join(f"{row[k]:>14,}" for k in columns))

    def ratio_row(title: str, top: str, bottom: str) -> None:
        ratios = [results[top][k] / results[bottom][k] for k in WORKLOADS]
        print(f"{title:34}" + "".join(f"{r:>13.3f}x" for r in ratios))

    for protocol in protocols:
        if args.baseline:
            ratio_row(f"measured/baseline {protocol}", _row_label("measured", protocol),
                      _row_label("baseline", protocol))
    if len(protocols) > 1:
        for label in sources:
            ratio_row(f"{label} peerjs/app", _row_label(label, "peerjs"), label)
    (run_dir / "instructions.json").write_text(json.dumps(results, indent=1))
    print(f"JSON: {run_dir / 'instructions.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
