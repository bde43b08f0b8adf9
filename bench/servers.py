"""The servers under test, each a subprocess pinned to the server core.

Ours runs as production does (scripts/serve): Daphne with the same flags,
DJANGO_DEBUG=0, a secret key, a migrated SQLite database, the in-memory
channel layer unless a Redis URL is given; "ours-peerjs" is the same server
driven in the PeerJS protocol at its /peerjs endpoint. PeerJS runs its own
CLI.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench import npm
from bench.system import SERVER_CORE, free_port, pinned

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
STOP_TIMEOUT_SECONDS = 10
READY_TIMEOUT_SECONDS = 30
# What scripts/serve passes to Daphne, minus the bind address and port.
DAPHNE_FLAGS = [
    "-v", "0",
    "--websocket_timeout", "-1", "--ping-interval", "15", "--ping-timeout", "15",
    "--websocket-max-message-size", "1048576", "--websocket-max-frame-size", "1048576",
]
# PeerJS refuses clients beyond concurrent_limit (5000 by default); the
# benchmark holds 15 000, so the limit is lifted. Everything else is default.
PEERJS_FLAGS = ["--concurrent_limit", "1000000"]


@dataclass
class ServerProcess:
    """A started server: where it listens and how to stop it."""

    name: str
    protocol: str
    port: int
    process: subprocess.Popen
    log_path: Path
    host: str = "127.0.0.1"
    extra: dict = field(default_factory=dict)
    # The process that serves, when it is a child of the one started
    # (granian's worker); its CPU and memory are what is measured.
    worker_pid: int | None = None

    @property
    def pid(self) -> int:
        return self.worker_pid or self.process.pid

    @property
    def address(self) -> dict:
        return {"host": self.host, "port": self.port}

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def count_in_log(self, needle: str) -> int:
        try:
            with open(self.log_path, errors="replace") as log:
                return sum(needle in line for line in log)
        except FileNotFoundError:
            return 0

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a bound; only this process, by PID."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _start(name: str, protocol: str, command: list[str], *, port: int, log_path: Path,
           env: dict[str, str] | None = None, cwd: Path = ROOT) -> ServerProcess:
    log = open(log_path, "wb")
    try:
        process = subprocess.Popen(
            pinned(SERVER_CORE, command),
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        # The child has its own descriptor now.
        log.close()
    return ServerProcess(name=name, protocol=protocol, port=port, process=process, log_path=log_path)


def _wait_http(server: ServerProcess, path: str = "/") -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    url = f"http://{server.host}:{server.port}{path}"
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited early:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} did not become ready:\n{server.log_tail()}")


# The per-client abuse limits stand for many users behind few addresses
# here: 15 000 clients come from 8 loopback addresses, and a benchmark pair
# relays thousands of frames a second. Like PeerJS's concurrent_limit they
# are lifted (0 turns a connection cap off; the frame bucket is made too big
# to drain); everything else stays at its default. The bucket's own cost per
# frame is still paid.
ABUSE_LIMITS_OFF = {
    "SIGNALING_MAX_CONNECTIONS_PER_ADDRESS": "0",
    "SIGNALING_MAX_CONNECTIONS": "0",
    "SIGNALING_FRAMES_PER_SECOND": "1000000000",
    "SIGNALING_FRAME_BURST": "1000000000",
}


def ours_environment(database_url: str, redis_url: str | None = None) -> dict[str, str]:
    """Production-like settings; nothing inherited from the caller's DJANGO_*."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "SIGNALING_", "REDIS_URL", "DATABASE_URL"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="signaling_site.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_DEBUG="0",
        DATABASE_URL=database_url,
        **ABUSE_LIMITS_OFF,
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    # The speedups switch is the one setting passed through: the same
    # benchmark, stock (off) or patched (on, the default).
    if "SIGNALING_SPEEDUPS" in os.environ:
        env["SIGNALING_SPEEDUPS"] = os.environ["SIGNALING_SPEEDUPS"]
    return env


# Written by ``--commit`` next to the exported tree, which has no .git.
COMMIT_FILE = ".bench-commit"


def source_commit(source: Path) -> str:
    """The commit of the server code that runs, with "+dirty" if it has edits."""
    if (source / COMMIT_FILE).exists():
        return (source / COMMIT_FILE).read_text().strip()

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True,
                              timeout=30)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--", "signaling", "signaling_site")
    return commit + ("+dirty" if dirty else "")


def migrate(run_dir: Path, source: Path = ROOT, name: str = "db") -> str:
    """Create and migrate a SQLite database ``<name>.sqlite3`` in ``run_dir``;
    return its URL."""
    database_url = f"sqlite:///{run_dir / f'{name}.sqlite3'}"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=source,
        env=ours_environment(database_url),
        check=True,
        timeout=120,
    )
    return database_url


def start_ours(run_dir: Path, *, database_url: str, name: str = "ours",
               redis_url: str | None = None, backlog: int | None = None,
               source: Path = ROOT, protocol: str = "signaling") -> ServerProcess:
    """Our server; ``protocol`` is the one the driver speaks to it:
    "signaling" (the app protocol at /) or "peerjs" (its PeerJS endpoint,
    /peerjs with the default SIGNALING_PEERJS_PATH and key "peerjs")."""
    port = free_port()
    # Exactly scripts/serve's way: an endpoint with a 4096 accept backlog.
    backlog = backlog or 4096
    listen = ["-e", f"tcp:port={port}:interface=127.0.0.1:backlog={backlog}"]
    command = [str(VENV_BIN / "daphne"), *listen, *DAPHNE_FLAGS, "signaling_site.asgi:application"]
    asgi_server = os.environ.get("BENCH_ASGI_SERVER")
    if asgi_server == "uvicorn":
        # The same application under another ASGI server, for comparison
        # (issue 6: where Daphne cannot meet a target).
        command = [
            str(VENV_BIN / "uvicorn"), "signaling_site.asgi:application",
            "--host", "127.0.0.1", "--port", str(port), "--backlog", str(backlog),
            "--loop", "uvloop", "--http", "httptools", "--ws", "websockets",
            "--ws-ping-interval", "15", "--ws-ping-timeout", "15",
            "--ws-max-size", "1048576", "--no-access-log", "--log-level", "warning",
        ]
    elif asgi_server == "granian":
        # Rust HTTP and WebSocket stack; the application still runs in
        # Python on an asyncio loop. One worker; the process is pinned to
        # one core like the others, its runtime threads included.
        command = [
            str(VENV_BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--runtime-mode", "st",
            "--loop", "uvloop", "--backlog", str(backlog), "--ws", "--no-access-log",
            "--log-level", "warning", "signaling_site.asgi:application",
        ]
    server = _start(
        name,
        protocol,
        command,
        port=port,
        log_path=run_dir / f"{name}.log",
        env=ours_environment(database_url, redis_url),
        # Daphne imports the application from its working directory.
        cwd=source,
    )
    _wait_http(server)
    if asgi_server == "granian":
        server.worker_pid = _only_child(server.process.pid)
    server.extra = {"backlog": backlog, "redis": bool(redis_url)}
    return server


def _only_child(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"expected one worker process under {pid}, found {children}")
    return int(children[0])


def start_peerjs(run_dir: Path) -> ServerProcess:
    port = free_port()
    server = _start(
        "peerjs",
        "peerjs",
        [npm.node_binary(), str(npm.PEERJS_CLI), "--host", "127.0.0.1", "--port", str(port),
         *PEERJS_FLAGS],
        port=port,
        log_path=run_dir / "peerjs.log",
        cwd=npm.BENCH_DIR,
    )
    _wait_http(server)
    server.extra = {"backlog": 511}
    return server


REDIS_SERVER = "/usr/bin/redis-server"


def start_redis(run_dir: Path) -> ServerProcess:
    """A throwaway Redis on a free loopback port, nothing written to disk."""
    port = free_port()
    server = _start(
        "redis",
        "redis",
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(run_dir)],
        port=port,
        log_path=run_dir / "redis.log",
    )
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"redis-server exited early:\n{server.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"redis-server did not become ready:\n{server.log_tail()}")
