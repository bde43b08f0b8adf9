"""Installing the Node.js side: the load driver's ``ws`` and the PeerJS server.

Both come from the npm registry, pinned by bench/package-lock.json, into
bench/node_modules. ``npm ci`` runs again only when the lock file changed.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
NODE_MODULES = BENCH_DIR / "node_modules"
STAMP = NODE_MODULES / ".bench-lock-sha256"
PEERJS_CLI = NODE_MODULES / "peer" / "dist" / "bin" / "peerjs.js"
DRIVER = BENCH_DIR / "driver" / "main.mjs"
INSTALL_TIMEOUT_SECONDS = 300


class NodeMissing(RuntimeError):
    pass


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise NodeMissing(
            "the benchmark's load driver and the PeerJS server need Node.js >= 18 "
            "and npm (Debian: apt-get install nodejs npm)"
        )
    return node


def ensure_installed() -> None:
    """Install bench/node_modules from the lock file unless it is current.

    Under a lock on the lock file: the test suite's two workers may both
    get here at once on a fresh machine, and must not both run npm ci.
    """
    node_binary()
    with open(BENCH_DIR / "package-lock.json", "rb") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        _install(lock_file.read())


def _install(lock: bytes) -> None:
    digest = hashlib.sha256(lock).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest and PEERJS_CLI.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise NodeMissing("npm is needed to install the benchmark's Node packages")
    command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    # The registry can hiccup; one retry keeps a flaky network from failing CI.
    for attempt in (1, 2):
        done = subprocess.run(
            command,
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
        )
        if done.returncode == 0:
            STAMP.write_text(digest + "\n")
            return
        if attempt == 2:
            raise RuntimeError(f"npm ci failed:\n{done.stdout}\n{done.stderr}")
