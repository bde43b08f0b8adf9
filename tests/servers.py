"""Real Daphne processes for end-to-end tests, on free loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAPHNE = Path(sys.executable).parent / "daphne"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_environment(**overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "SIGNALING_", "REDIS_", "DATABASE_URL"))
    }
    # The mode under test (scripts/test runs the Daphne tests in both).
    if "SIGNALING_SPEEDUPS" in os.environ:
        env["SIGNALING_SPEEDUPS"] = os.environ["SIGNALING_SPEEDUPS"]
    env.update(
        DJANGO_SETTINGS_MODULE="signaling_site.settings",
        DJANGO_SECRET_KEY="end-to-end-test-secret-key-" + "x" * 30,
        DJANGO_DEBUG="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def migrate(database_url: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=base_environment(DATABASE_URL=database_url),
        check=True,
    )


def sqlite_copy(template: Path, directory: Path) -> str:
    """Copy a migrated SQLite file and return a DATABASE_URL for the copy."""
    target = directory / f"db-{time.monotonic_ns()}.sqlite3"
    shutil.copy(template, target)
    return f"sqlite:///{target}"


class DaphneServer:
    """One ``daphne signaling_site.asgi:application`` subprocess."""

    def __init__(
        self, *, env: dict[str, str], log_path: Path, extra_args=(), launcher=(str(DAPHNE),)
    ):
        self.port = free_port()
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [
                *launcher,
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "--websocket_timeout",
                "-1",
                *extra_args,
                "signaling_site.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.http_url + "/", timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError(f"daphne did not become ready:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
