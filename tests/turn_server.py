"""A throwaway real coturn (``turnserver``) for tests, on loopback.

It accepts TURN REST credentials made with ``secret`` (``use-auth-secret``),
exactly as a production coturn configured for this server would. Relays are
on 127.0.0.1 and peers on loopback are allowed, so two local peers can reach
each other only through it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from aioice import stun

TURNSERVER = Path(
    os.environ.get("TURNSERVER") or shutil.which("turnserver") or "/usr/bin/turnserver"
)
MISSING_TURNSERVER = f"""
coturn's turnserver is missing at {TURNSERVER}: the TURN tests cannot run.
Install Debian's package as root:  apt-get update && apt-get install -y coturn
(scripts/test does this for you), or point TURNSERVER at another binary.
"""
REALM = "signaling.test"


def require_turnserver() -> None:
    """Fail loudly (never skip) when coturn is not installed."""
    if not TURNSERVER.exists():
        pytest.fail(MISSING_TURNSERVER, pytrace=False)


def free_udp_and_tcp_port() -> int:
    """A loopback port free for both UDP and TCP (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


class TurnServer:
    def __init__(self, directory: Path, *, secret: str) -> None:
        require_turnserver()
        self.secret = secret
        self.port = free_udp_and_tcp_port()
        self.log_path = directory / "turnserver.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                str(TURNSERVER),
                "-n",  # no configuration file: everything is on this line
                "--listening-ip=127.0.0.1",
                f"--listening-port={self.port}",
                "--relay-ip=127.0.0.1",
                # Both peers are on this machine's loopback.
                "--allow-loopback-peers",
                "--use-auth-secret",
                f"--static-auth-secret={secret}",
                f"--realm={REALM}",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--no-software-attribute",
                "--no-rfc5780",
                f"--userdb={directory / 'turndb'}",
                f"--pidfile={directory / 'turnserver.pid'}",
                "--log-file=stdout",
                "--simple-log",
                # Sessions and their users are logged: tests can read them.
                "--verbose",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def wait_ready(self, timeout: float = 10) -> None:
        """Wait until a STUN Binding request is answered."""
        request = stun.Message(
            message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST
        )
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.1)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"turnserver exited early:\n{self.log()}")
                sock.sendto(bytes(request), self.address)
                try:
                    response = stun.parse_message(sock.recv(2048))
                except OSError:
                    continue
                if response.transaction_id == request.transaction_id:
                    return
        raise RuntimeError(f"turnserver did not answer:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
