"""Daphne with tracemalloc: SIGUSR1 writes a snapshot (used by bench.memory).

    python -X tracemalloc=10 bench/_traced_daphne.py <daphne arguments>

The snapshot goes to $BENCH_TRACEMALLOC_DIR/snapshot-<n>.pickle.
"""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc
from pathlib import Path

_count = 0


def _dump(signum: int, frame: object) -> None:
    global _count
    _count += 1
    target = Path(os.environ["BENCH_TRACEMALLOC_DIR"]) / f"snapshot-{_count}.pickle"
    tracemalloc.take_snapshot().dump(str(target))


def main() -> None:
    # Run as a script, this directory is first on sys.path; its modules
    # (profile.py!) must not shadow the standard library's or the server's.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    if not tracemalloc.is_tracing():
        tracemalloc.start(10)
    signal.signal(signal.SIGUSR1, _dump)
    from daphne.cli import CommandLineInterface

    sys.argv[0] = "daphne"
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
