"""``python -m bench``: run the servers through every measure, print the table.

The servers: ``ours`` (our server in its app protocol), ``ours-peerjs`` (the
same server driven in the PeerJS protocol at its /peerjs endpoint) and
``peerjs`` (peerjs-server, npm ``peer``).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench import npm, report
from bench.measures import cross_instance, server_suite
from bench.plan import FULL, QUICK, SMOKE, Plan
from bench.servers import (
    COMMIT_FILE,
    REDIS_SERVER,
    ROOT,
    migrate,
    source_commit,
    start_ours,
    start_peerjs,
)
from bench.system import DRIVER_CORE, raise_fd_limit

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "latest.json"
SERVERS = ("ours", "ours-peerjs", "peerjs")
# Our server, and the wire protocol the driver speaks to it.
OURS = {"ours": "signaling", "ours-peerjs": "peerjs"}
# Descriptors each process needs besides its client sockets.
FD_HEADROOM = 1_000

logger = logging.getLogger("bench")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="shorter windows (about half the time)")
    size.add_argument("--smoke", action="store_true", help="seconds-long run at tiny scale (tests)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the idle/storm client count (15 000) by this")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="comma-separated subset of: ours,ours-peerjs,peerjs (default all three)")
    parser.add_argument("--no-cross-instance", action="store_true",
                        help="skip measure 5 (two instances of ours through Redis)")
    parser.add_argument("--daphne-backlog", type=int, default=None,
                        help="listen with this accept backlog (Daphne -e ...:backlog=N) instead "
                             "of scripts/serve's -b/-p, whose Twisted default is 50")
    parser.add_argument("--storm-window", type=int, default=None,
                        help="clients connecting at once during the storm (default 500)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--commit", default=None,
                        help="run our server as committed at this revision (git archive into "
                             "the run directory), not the working tree")
    source.add_argument("--source", type=Path, default=ROOT,
                        help="directory with the server code to run (manage.py, signaling/); "
                             "e.g. a `git archive` of a commit, to measure it while the "
                             "working tree changes (default: this checkout)")
    parser.add_argument("--client", choices=("wire", "ws"), default=None,
                        help="the driver's WebSocket client: wire (minimal, default) or ws "
                             "(the npm package), to cross-check figures")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"where to write the JSON results (default {DEFAULT_OUTPUT})")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="where server logs and the database go (default bench/.runs/<time>)")
    return parser.parse_args(argv)


def choose_plan(args: argparse.Namespace, fd_limit: int) -> Plan:
    plan = SMOKE if args.smoke else QUICK if args.quick else FULL
    plan = plan.scaled(args.scale)
    if args.storm_window:
        plan = replace(plan, storm_window=args.storm_window)
    if args.client:
        plan = replace(plan, client=args.client)
    ceiling = fd_limit - FD_HEADROOM
    if plan.idle_clients > ceiling:
        logger.warning("fd limit %d: idle clients capped at %d", fd_limit, ceiling)
        plan = replace(plan, idle_clients=ceiling)
    return plan


def prepare_tool_run(kind: str, commit: str | None) -> tuple[Path, Path]:
    """The set-up bench.memory and bench.profile share: this process on the
    driver core, file limit raised, the Node side installed, a run
    directory ``.runs/<kind>-<time>``, and the code to measure (the working
    tree, or ``commit`` exported into the run directory)."""
    os.sched_setaffinity(0, {DRIVER_CORE})
    raise_fd_limit()
    npm.ensure_installed()
    run_dir = BENCH_DIR / ".runs" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    source = export_commit(commit, run_dir) if commit else ROOT
    return run_dir, source


def export_commit(revision: str, run_dir: Path) -> Path:
    """Extract the tree of ``revision`` into the run directory."""
    target = run_dir / "source"
    target.mkdir(exist_ok=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", revision],
                            capture_output=True, text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    (target / COMMIT_FILE).write_text(commit + "\n")
    return target


def environment(fd_limit: int, source: Path) -> dict[str, Any]:
    return {
        "source": str(source),
        "source_commit": source_commit(source),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "fd_limit": fd_limit,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _terminate_as_exit(signum: int, frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C, so every server and driver is stopped.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate_as_exit)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = parse_args(argv)
    wanted = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = set(wanted) - set(SERVERS)
    if unknown:
        raise SystemExit(f"unknown servers: {', '.join(sorted(unknown))}")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: the server on core 0, the load driver on core 1")
    # The orchestrator shares the driver's core; the server's core stays clean.
    os.sched_setaffinity(0, {DRIVER_CORE})
    fd_limit = raise_fd_limit()
    plan = choose_plan(args, fd_limit)
    run_dir = args.run_dir or BENCH_DIR / ".runs" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    logger.info("installing Node packages (npm ci, once) ...")
    npm.ensure_installed()

    source = export_commit(args.commit, run_dir) if args.commit else args.source.resolve()
    started = time.monotonic()
    results: dict[str, Any] = {
        "environment": environment(fd_limit, source),
        "plan": asdict(plan),
        "servers": {},
        "run_dir": str(run_dir),
    }
    database_url = migrate(run_dir, source) if "ours" in wanted else ""
    for name in wanted:
        logger.info("%s:", name)
        if name in OURS:
            # Each of our entries starts on a fresh database, as ours did.
            url = database_url if name == "ours" else migrate(run_dir, source, name=name)
            server = start_ours(run_dir, database_url=url, name=name,
                                backlog=args.daphne_backlog, source=source,
                                protocol=OURS[name])
        else:
            server = start_peerjs(run_dir)
        results["servers"][name] = server_suite(server, plan)
    if "ours" in wanted and not args.no_cross_instance:
        if Path(REDIS_SERVER).exists():
            logger.info("ours, two instances through Redis:")
            results["cross_instance"] = cross_instance(plan, run_dir, database_url, source)
        else:
            results["cross_instance"] = {"supported": None, "note": f"{REDIS_SERVER} missing"}
    results["total_s"] = round(time.monotonic() - started, 1)
    compared = report.peerjs_protocol(results)
    if compared is not None:
        results["peerjs_protocol"] = compared

    report.write_json(results, args.output)
    print(report.table(results))
    second = report.peerjs_protocol_table(results)
    if second is not None:
        print()
        print(second)
    for note in report.notes(results):
        print(f"- {note}")
    print(f"ours: {results['environment']['source_commit']} from {source}")
    print(f"JSON: {args.output}   logs: {run_dir}   total {results['total_s']} s")
    return 0
