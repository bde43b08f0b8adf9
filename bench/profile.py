"""Profile our server under the benchmark's load with py-spy.

    .venv/bin/pip install py-spy          # not a project requirement
    .venv/bin/python -m bench.profile [--idle 3000] [--commit HEAD]

Starts our server as the benchmark does (core 0) and samples it with py-spy
(core 1, next to the driver) during: relay with 100 online, full
handshakes, the sign-in storm, and relay with the storm's clients online.
Prints, per phase, the server's CPU per delivered message (or per sign-in,
per handshake) and the frames where the samples fall: by self time (the
innermost frame) and inclusive time (anywhere on the stack), per thread.
Raw stacks (py-spy's collapsed format, one "stack count" a line) are kept in
the run directory for flame graphs.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from bench.cli import prepare_tool_run
from bench.measures import handshakes, relay
from bench.plan import FULL, Plan
from bench.runner import IdleHolder
from bench.servers import ServerProcess, migrate, source_commit, start_ours
from bench.system import DRIVER_CORE, fresh_source_addresses, pinned, wait_until_quiet

logger = logging.getLogger("bench")
PY_SPY = Path(sys.executable).parent / "py-spy"
SAMPLE_RATE = 200


def _record(pid: int, seconds: float, output: Path) -> subprocess.Popen:
    return subprocess.Popen(
        pinned(DRIVER_CORE, [
            str(PY_SPY), "record", "--pid", str(pid), "--rate", str(SAMPLE_RATE),
            "--duration", str(max(1, int(seconds))), "--format", "raw", "--nolineno",
            "--threads", "--output", str(output),
        ]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _frame_name(frame: str) -> str:
    # "handle_reply (daphne/server.py)" -> as is; thread frames are kept too.
    return frame.strip()


def summarize_stacks(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive shares of samples, per thread, from a raw file."""
    threads: dict[str, tuple[Counter, Counter, int]] = {}
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        # py-spy --threads: "process ...;thread (0x...);frame;...".
        thread = next((f for f in frames if f.startswith("thread ")), "thread ?")
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        self_counts, inclusive, total = threads.get(thread, (Counter(), Counter(), 0))
        self_counts[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        threads[thread] = (self_counts, inclusive, total + count)
    all_samples = sum(total for _, _, total in threads.values()) or 1
    summary = {}
    for thread, (self_counts, inclusive, total) in sorted(
        threads.items(), key=lambda item: -item[1][2]
    ):
        summary[thread] = {
            "share_of_samples": round(total / all_samples, 3),
            "samples": total,
            "self": [(frame, round(n / total, 3)) for frame, n in self_counts.most_common(top)],
            "inclusive": [(frame, round(n / total, 3)) for frame, n in inclusive.most_common(top)],
        }
    return summary


def _profiled(name: str, server: ServerProcess, run_dir: Path, seconds: float,
              phase: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    logger.info("%s (sampling %.0f s) ...", name, seconds)
    raw = run_dir / f"profile-{name}.txt"
    spy = _record(server.pid, seconds, raw)
    result = phase()
    try:
        _, errors = spy.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        spy.kill()
        errors = "py-spy did not finish"
    result["profile"] = summarize_stacks(raw) if raw.exists() else {"error": errors}
    result["profile_raw"] = str(raw)
    return result


def _per_unit(result: dict[str, Any], rate_key: str) -> float | None:
    """Server CPU microseconds per unit of work (message, sign-in, handshake)."""
    rate = result.get(rate_key)
    cpu = (result.get("cpu") or {}).get("server_cpu")
    if not rate or cpu is None:
        return None
    return round(cpu * 1e6 / rate, 1)


def _print_phase(name: str, result: dict[str, Any], rate_key: str, unit: str) -> None:
    print(f"\n== {name}: {result.get(rate_key)} {unit}/s, server CPU "
          f"{(result.get('cpu') or {}).get('server_cpu')}, "
          f"{_per_unit(result, rate_key)} us of server CPU per {unit}")
    if "error" in result:
        print(f"   error: {result['error']}")
    for thread, data in list((result.get("profile") or {}).items())[:2]:
        if not isinstance(data, dict):
            continue
        print(f"  {thread}: {data['share_of_samples']:.0%} of samples")
        print("    self:")
        for frame, share in data["self"][:12]:
            print(f"      {share:6.1%}  {frame}")
        print("    inclusive:")
        for frame, share in data["inclusive"][:25]:
            print(f"      {share:6.1%}  {frame}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=3000,
                        help="idle clients for the loaded relay (default 3000: at 15 000 the "
                             "current code needs minutes just to sign them in)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds sampled per phase")
    parser.add_argument("--commit", default=None, help="profile this revision (git archive)")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON summary (default: <run dir>/profile.json)")
    args = parser.parse_args(argv)
    if not PY_SPY.exists() and shutil.which("py-spy") is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    run_dir, source = prepare_tool_run("profile", args.commit)
    plan: Plan = replace(FULL, relay_warmup_s=1.0, relay_duration_s=args.duration,
                         handshake_warmup_s=1.0, handshake_duration_s=args.duration,
                         idle_clients=args.idle)
    database_url = migrate(run_dir, source)
    server = start_ours(run_dir, database_url=database_url, source=source)
    results: dict[str, Any] = {"source_commit": source_commit(source), "plan_idle": args.idle}
    span = args.duration + 1
    try:
        results["relay_online"] = _profiled(
            "relay-100", server, run_dir, span, lambda: relay(server, plan, prefix="pa"))
        wait_until_quiet([server.pid], timeout=30)
        results["handshake"] = _profiled(
            "handshake", server, run_dir, span, lambda: handshakes(server, plan))
        wait_until_quiet([server.pid], timeout=60)
        holder = IdleHolder(
            {"protocol": "signaling", "server": server.address, "count": args.idle,
             "window": plan.storm_window, "prefix": "pidle", "sources": fresh_source_addresses()},
            storm_timeout_seconds=plan.storm_timeout_s, watch={"server": [server.pid]},
        )
        try:
            results["storm"] = _profiled("storm", server, run_dir, args.duration,
                                         holder.wait_ready)
            wait_until_quiet([server.pid], timeout=60)
            results["relay_loaded"] = _profiled(
                f"relay-{args.idle}-idle", server, run_dir, span,
                lambda: relay(server, plan, prefix="pb", watch={"driver": [holder.pid]}))
        finally:
            server.stop()
            holder.close()
    finally:
        server.stop()
    output = args.output or run_dir / "profile.json"
    output.write_text(json.dumps(results, indent=2) + "\n")
    _print_phase("relay, 100 online", results["relay_online"], "msgs_per_s", "msg")
    _print_phase("full handshakes", results["handshake"], "handshakes_per_s", "handshake")
    _print_phase("sign-in storm (first seconds)", results["storm"], "signins_per_s", "sign-in")
    _print_phase(f"relay, {args.idle} idle online", results["relay_loaded"], "msgs_per_s", "msg")
    print(f"\nraw stacks and JSON: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
