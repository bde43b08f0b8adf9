"""Running the Node.js load driver (bench/driver/main.mjs) from Python.

The driver prints JSON lines. ``measure_start``/``measure_end`` mark the
measured window so that the CPU of the server and of the driver itself is
read over exactly that window.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from typing import Any

from bench import npm
from bench.system import DRIVER_CORE, CpuWatch, pinned


class DriverError(RuntimeError):
    pass


class DriverProcess:
    """One driver subprocess and the events it printed."""

    def __init__(self, command: str, config: dict[str, Any], *, budget_seconds: float) -> None:
        self.budget_seconds = budget_seconds
        config = {**config, "hardTimeoutMs": int(budget_seconds * 1000)}
        self.process = subprocess.Popen(
            pinned(DRIVER_CORE, [npm.node_binary(), str(npm.DRIVER), command, json.dumps(config)]),
            cwd=npm.BENCH_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                self._events.put(json.loads(line))
            except json.JSONDecodeError:
                self._stderr.append(line)
        self._events.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line.rstrip())

    def next_event(self, timeout: float) -> dict[str, Any]:
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise DriverError(f"driver silent for {timeout:.0f} s; killed") from None
        if event is None:
            self.process.wait(timeout=5)
            raise DriverError(
                f"driver exited ({self.process.returncode}) early: "
                + "\n".join(self._stderr[-20:])
            )
        return event

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait(self, timeout: float = 30) -> None:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def run_measured(
    command: str,
    config: dict[str, Any],
    *,
    watch: dict[str, list[int]],
    budget_seconds: float,
) -> dict[str, Any]:
    """Run a driver command to its result, adding CPU use over its window.

    ``watch`` names groups of processes to account for (the server, other
    driver processes); the driver itself is added as ``driver``.
    """
    driver = DriverProcess(command, config, budget_seconds=budget_seconds)
    cpu = CpuWatch({**watch, "driver": [*watch.get("driver", []), driver.pid]})
    deadline = time.monotonic() + budget_seconds + 10
    start = None
    usage: dict[str, float] = {}
    try:
        while True:
            event = driver.next_event(timeout=max(1.0, deadline - time.monotonic()))
            kind = event.pop("event")
            if kind == "measure_start":
                start = cpu.snapshot()
            elif kind == "measure_end" and start is not None:
                usage = CpuWatch.usage(start, cpu.snapshot())
            elif kind == "result":
                driver.wait()
                return {**event, **({"cpu": usage} if usage else {})}
    finally:
        # Interrupted or failed: the driver must not outlive the run.
        driver.kill()


class IdleHolder:
    """The sign-in storm's clients, held signed in while other phases run."""

    def __init__(self, config: dict[str, Any], *, storm_timeout_seconds: float,
                 watch: dict[str, list[int]]) -> None:
        self.driver = DriverProcess(
            "idle",
            {**config, "stormTimeoutMs": int(storm_timeout_seconds * 1000)},
            # Held across the phases that follow the storm.
            budget_seconds=storm_timeout_seconds + 600,
        )
        self.cpu = CpuWatch({**watch, "driver": [self.driver.pid]})
        self._started = self.cpu.snapshot()
        self.storm_timeout_seconds = storm_timeout_seconds

    @property
    def pid(self) -> int:
        return self.driver.pid

    def wait_ready(self) -> dict[str, Any]:
        """Wait for the storm to finish; return its figures and CPU use."""
        event = self.driver.next_event(timeout=self.storm_timeout_seconds + 60)
        after = self.cpu.snapshot()
        if event.pop("event") != "ready":
            raise DriverError(f"unexpected driver event {event}")
        return {**event, "cpu": CpuWatch.usage(self._started, after)}

    def open_count(self) -> int:
        self.driver.command("status")
        return int(self.driver.next_event(timeout=30)["open"])

    def close(self) -> dict[str, Any]:
        try:
            self.driver.command("close")
            event = self.driver.next_event(timeout=120)
            self.driver.wait()
            return event
        except (DriverError, BrokenPipeError, OSError) as error:
            self.driver.kill()
            return {"error": str(error)}
