"""Where our server's memory per idle connection goes (tracemalloc).

    .venv/bin/python -m bench.memory [--clients 2000] [--commit HEAD]

Runs our server as the benchmark does but under tracemalloc, signs in
``--clients`` idle clients, and compares snapshots taken before and after:
the allocation sites (file:line, with their callers) that grew, in bytes per
client. tracemalloc sees Python allocations only; the VmRSS growth printed
beside it includes the allocator's and the kernel's share (socket buffers
are not in RSS).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path

from bench.cli import BENCH_DIR, prepare_tool_run
from bench.runner import IdleHolder
from bench.servers import DAPHNE_FLAGS, ServerProcess, _start, _wait_http, migrate, ours_environment
from bench.system import free_port, fresh_source_addresses, rss_kib, wait_until_quiet


def _snapshot(server: ServerProcess, directory: Path, number: int) -> tracemalloc.Snapshot:
    os.kill(server.pid, signal.SIGUSR1)
    target = directory / f"snapshot-{number}.pickle"
    deadline = time.monotonic() + 120
    last_size = -1
    # The file is complete once its size stops changing.
    while time.monotonic() < deadline:
        if target.exists() and target.stat().st_size == last_size and last_size > 0:
            break
        last_size = target.stat().st_size if target.exists() else -1
        time.sleep(0.5)
    return tracemalloc.Snapshot.load(str(target))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--commit", default=None)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    run_dir, source = prepare_tool_run("memory", args.commit)
    database_url = migrate(run_dir, source)
    port = free_port()
    env = ours_environment(database_url)
    env["BENCH_TRACEMALLOC_DIR"] = str(run_dir)
    server = _start(
        "ours-traced", "signaling",
        # By path: the exported source has a bench/ of its own.
        [sys.executable, "-X", "tracemalloc=10", str(BENCH_DIR / "_traced_daphne.py"),
         "-b", "127.0.0.1", "-p", str(port), *DAPHNE_FLAGS, "signaling_site.asgi:application"],
        port=port, log_path=run_dir / "ours-traced.log", env=env, cwd=source,
    )
    _wait_http(server)
    holder = None
    try:
        # A first small wave warms every code path (imports, caches, pools).
        warm = IdleHolder({"protocol": "signaling", "server": server.address, "count": 50,
                           "window": 50, "prefix": "warm", "sources": fresh_source_addresses()},
                          storm_timeout_seconds=60, watch={"server": [server.pid]})
        warm.wait_ready()
        wait_until_quiet([server.pid], timeout=60)
        before = _snapshot(server, run_dir, 1)
        rss_before = rss_kib(server.pid)
        holder = IdleHolder({"protocol": "signaling", "server": server.address,
                             "count": args.clients, "window": 200, "prefix": "idle",
                             "sources": fresh_source_addresses()},
                            storm_timeout_seconds=600, watch={"server": [server.pid]})
        storm = holder.wait_ready()
        wait_until_quiet([server.pid], timeout=120)
        after = _snapshot(server, run_dir, 2)
        rss_after = rss_kib(server.pid)
        warm.close()
    finally:
        server.stop()
        if holder is not None:
            holder.close()
    clients = storm["acked"]
    stats = after.compare_to(before, "traceback")
    traced = sum(stat.size_diff for stat in stats)
    print(f"{clients} idle clients: VmRSS +{(rss_after - rss_before) / clients:.1f} KiB per "
          f"client; tracemalloc +{traced / clients / 1024:.1f} KiB per client")
    by_line = after.compare_to(before, "lineno")
    print("\nby allocation line (bytes per client):")
    for stat in by_line[: args.top]:
        print(f"  {stat.size_diff / clients:8.0f}  {stat.count_diff / clients:6.2f} blocks  "
              f"{stat.traceback[0]}")
    print("\nby allocation site with callers (bytes per client):")
    for stat in stats[:12]:
        print(f"  {stat.size_diff / clients:8.0f}")
        for line in stat.traceback.format()[-8:]:
            print(f"      {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
