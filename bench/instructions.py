"""Count the instructions our server spends per operation, under callgrind.

    .venv/bin/python -m bench.instructions [--baseline REV] [--commit REV]

Wall-clock figures on a shared machine move by 10-30 % between runs of the
same code; instruction counts do not (valgrind counts what the process
executes, whatever else the machine does: two runs of the same code agree
within 1-4 %, sign-ins varying most). So a change to per-operation cost is best judged here, and
its effect on throughput then confirmed with bench/run.

Starts our server under ``valgrind --tool=callgrind`` exactly as the
benchmark does (same Daphne flags and settings, SQLite), warms it up, then
for each workload zeroes the counters, runs it from this process and reads
the total: 200 sign-ins (connect, SignIn, close), 1000 relayed ICE frames
between one pair, 100 full handshakes (two sign-ins, StartConnection, Offer,
Answer, 4 ICE each way, two closes). Timers (connection reaping, heartbeats,
the collector) run per second whatever the load: their rate is measured
idle first and their share of each workload's wall time taken off, so that
a slower run does not count as costlier code. Prints
instructions per operation, and with --baseline the same for that revision
measured in the same run, and the ratio. Needs valgrind (Debian package).
Only user-space instructions count: system calls are not measured.
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
WORKLOADS = {"sign-ins": 200, "relays": 1000, "handshakes": 100}


async def _signed_in(url: str, name: str, address: str = "127.0.0.2"):
    ws = await websockets.connect(url, local_addr=(address, 0), compression=None)
    await ws.send(json.dumps({"type": "SignIn", "username": name}))
    await ws.recv()
    return ws


async def _exchange(sender, receiver, kind: str, target: str, data: str) -> None:
    await sender.send(json.dumps({"type": kind, "target": target, "data": data}))
    await receiver.recv()


async def run_workload(url: str, kind: str, count: int, tag: str) -> None:
    if kind == "sign-ins":
        for n in range(count):
            ws = await _signed_in(url, f"s{tag}{n}", f"127.0.0.{2 + n % 8}")
            await ws.close()
    elif kind == "relays":
        a, b = await _signed_in(url, f"a{tag}"), await _signed_in(url, f"b{tag}")
        for _ in range(count):
            await _exchange(a, b, "IceCandidates", f"b{tag}", CANDIDATE)
        await a.close()
        await b.close()
    elif kind == "handshakes":
        for n in range(count):
            name_a, name_b = f"ha{tag}{n}", f"hb{tag}{n}"
            a, b = await _signed_in(url, name_a), await _signed_in(url, name_b)
            await a.send(json.dumps({"type": "StartConnection", "target": name_b}))
            await b.recv()
            await _exchange(a, b, "Offer", name_b, SDP)
            await _exchange(b, a, "Answer", name_a, SDP)
            for k in range(4):
                await _exchange(a, b, "IceCandidates", name_b, f"c{k}")
                await _exchange(b, a, "IceCandidates", name_a, f"c{k}")
            await a.close()
            await b.close()


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


def measure(source: Path, run_dir: Path, label: str, scale: float = 1.0) -> dict[str, int]:
    """Instructions per operation of the server code in ``source``."""
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
    url = f"ws://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                asyncio.run(run_workload(url, "sign-ins", 1, "ready"))
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"server under valgrind did not start: {log.name}")
                time.sleep(1)
        subprocess.run(["callgrind_control", "-i", "on", str(server.pid)],
                       capture_output=True, check=True)
        for kind, count in workloads.items():  # warm-up: imports, caches
            asyncio.run(run_workload(url, kind, max(1, count // 20), "warm"))
        time.sleep(1)
        idle_seconds = 10 if scale >= 1 else 2
        background_before = _background_rate(server.pid, output, idle_seconds)
        totals = {}
        for kind, count in workloads.items():
            _zero(server.pid)
            started = time.monotonic()
            asyncio.run(run_workload(url, kind, count, "m"))
            totals[kind] = (_total_instructions(server.pid, output), time.monotonic() - started)
        # Timers run per second, not per operation: what they spend idle
        # (the mean of a window before and one after the workloads, as a
        # 1 s timer lands 10 or 11 times in 10 s) over each workload's wall
        # time is taken off, or a slower run (valgrind is ~50x slower than
        # the real thing, more on a loaded machine) would count as costlier
        # code.
        background = (background_before + _background_rate(server.pid, output, idle_seconds)) / 2
        per_operation = {
            kind: round(max(0.0, total - background * elapsed) / workloads[kind])
            for kind, (total, elapsed) in totals.items()
        }
        per_operation["background/s"] = round(background)
        return per_operation
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commit", help="measure this revision (default: the working tree)")
    parser.add_argument("--baseline", help="also measure this revision, for the ratio")
    parser.add_argument("--smoke", action="store_true",
                        help="a few operations of each kind (the test suite's check)")
    args = parser.parse_args(argv)
    scale = 0.05 if args.smoke else 1.0
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    run_dir, source = prepare_tool_run("instructions", args.commit)
    results = {
        "measured": {"source": source_commit(source), **measure(source, run_dir, "measured", scale)}
    }
    if args.baseline:
        (run_dir / "baseline").mkdir()
        baseline_source = export_commit(args.baseline, run_dir / "baseline")
        results["baseline"] = {
            "source": source_commit(baseline_source),
            **measure(baseline_source, run_dir, "baseline", scale),
        }
    columns = [*WORKLOADS, "background/s"]
    print(f"{'instructions per operation':28}" + "".join(f"{k:>14}" for k in columns))
    for label, row in results.items():
        print(f"{label + ' ' + row['source']:28}" + "".join(f"{row[k]:>14,}" for k in columns))
    if args.baseline:
        ratios = [results["measured"][k] / results["baseline"][k] for k in WORKLOADS]
        print(f"{'measured/baseline':28}" + "".join(f"{r:>13.3f}x" for r in ratios))
    (run_dir / "instructions.json").write_text(json.dumps(results, indent=1))
    print(f"JSON: {run_dir / 'instructions.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
