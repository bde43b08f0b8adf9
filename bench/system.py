"""Reading this machine: per-process CPU and memory, per-core load, limits.

Everything here reads /proc, so the numbers are the kernel's and cost the
measured processes nothing.
"""

from __future__ import annotations

import itertools
import os
import random
import resource
import socket
import time
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The server gets core 0, the load driver core 1 (see README: pinning).
SERVER_CORE = 0
DRIVER_CORE = 1
# 15 000 idle clients plus the active ones, in both the driver and the server.
FD_LIMIT = 200_000
# Each phase's client sockets come from 8 loopback source addresses of their
# own (127.0.N.2-9, N moving on every phase, from a random start). With one
# fixed set, the tens of thousands of sockets an earlier phase left in
# TIME_WAIT on those addresses made every later bind() search long for a
# free port: the second server's sign-in storm ran with the driver's core
# at 99 % (mostly in the kernel) and its server at 12 %.
_SOURCE_BLOCKS = itertools.count(random.randrange(1, 255))


def fresh_source_addresses() -> list[str]:
    """8 source addresses no recent phase used (8 x ~28k ephemeral ports)."""
    block = next(_SOURCE_BLOCKS) % 254 + 1
    return [f"127.0.{block}.{i}" for i in range(2, 10)]


def pinned(core: int, command: list[str]) -> list[str]:
    """Prefix a command so that it runs on one CPU core only."""
    return ["taskset", "-c", str(core), *command]


def raise_fd_limit(limit: int = FD_LIMIT) -> int:
    """Raise RLIMIT_NOFILE for this process and the children it starts.

    The hard limit can be raised only by root; otherwise the soft limit goes
    as high as the hard one allows. Returns the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < limit:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            return limit
        except (ValueError, PermissionError):
            limit = hard
    if soft < limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name may contain spaces; fields resume after ")".
            return stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _cpu_of(fields: list[str]) -> float:
    # utime and stime are fields 14 and 15 of stat(5); here 11 and 12.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process used so far (0 if it is gone)."""
    fields = _stat_fields(pid)
    return _cpu_of(fields) if fields else 0.0


def rss_kib(pid: int) -> int:
    """Resident set size (VmRSS) of a process, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def core_busy_seconds() -> dict[int, float]:
    """Busy (non-idle, non-iowait) time of each core so far, in seconds."""
    busy: dict[int, float] = {}
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith("cpu") and line[3].isdigit():
                name, *ticks = line.split()
                values = [int(t) for t in ticks]
                idle = values[3] + values[4]
                # guest time is already counted in user time.
                busy[int(name[3:])] = (sum(values[:8]) - idle) / CLOCK_TICKS
    return busy


KTHREADD = 2


def user_process_cpu(exclude: set[int]) -> dict[int, float]:
    """CPU seconds of every user-space process except ``exclude``.

    Kernel threads (children of kthreadd) are left out: under load they are
    mostly ksoftirqd doing our own loopback traffic.
    """
    usage: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude or int(entry) == KTHREADD:
            continue
        fields = _stat_fields(int(entry))
        if fields and int(fields[1]) != KTHREADD:
            usage[int(entry)] = _cpu_of(fields)
    return usage


@dataclass
class Snapshot:
    """CPU counters at one instant, to subtract from a later one."""

    wall: float
    processes: dict[str, float]
    cores: dict[int, float]
    # Every other process on the machine, by PID.
    others: dict[int, float]


class CpuWatch:
    """Who used the CPU between two instants: named processes and cores.

    CPU used by processes we did not start (another user of this machine,
    its services) competes with ours on two cores: a window with much of it
    is disturbed and its figures are not comparable.
    """

    def __init__(self, processes: dict[str, list[int]]) -> None:
        self.processes = processes
        self.ours = {os.getpid(), *(pid for pids in processes.values() for pid in pids)}

    def snapshot(self) -> Snapshot:
        return Snapshot(
            wall=time.monotonic(),
            processes={
                name: sum(cpu_seconds(pid) for pid in pids)
                for name, pids in self.processes.items()
            },
            cores=core_busy_seconds(),
            others=user_process_cpu(self.ours),
        )

    @staticmethod
    def usage(before: Snapshot, after: Snapshot) -> dict[str, float]:
        """Fractions of one core over the interval, by process group and core."""
        wall = max(after.wall - before.wall, 1e-6)
        result = {
            f"{name}_cpu": round((after.processes[name] - before.processes[name]) / wall, 3)
            for name in before.processes
        }
        for core in before.cores:
            result[f"core{core}_busy"] = round(
                (after.cores[core] - before.cores[core]) / wall, 3
            )
        # A process that started inside the window counts in full.
        others = sum(
            seconds - before.others.get(pid, 0.0) for pid, seconds in after.others.items()
        )
        result["others_cpu"] = round(max(others, 0.0) / wall, 3)
        return result


def wait_until_quiet(
    pids: list[int], *, below: float = 0.05, interval: float = 0.5, timeout: float = 30
) -> float:
    """Wait until processes use less than ``below`` of a core; return the wait.

    A server may still be working off a phase (database writes queued behind
    sign-ins, closes); the next phase should not pay for it.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(interval)
        if sum(cpu_seconds(pid) for pid in pids) - before < below * interval:
            break
    return round(time.monotonic() - started, 2)


def wait_for_quiet_machine(
    ours: set[int], *, below: float = 0.1, window: float = 1.0, timeout: float = 30
) -> dict[str, float]:
    """Wait until processes we did not start use less than ``below`` of a core.

    This machine may be shared (a test suite, a package install): measuring
    while another process takes half a core measures that process. Returns
    how long it waited and the last level seen, so a result can say so.
    """
    started = time.monotonic()
    ours = ours | {os.getpid()}
    level = 0.0
    while True:
        before = user_process_cpu(ours)
        time.sleep(window)
        after = user_process_cpu(ours)
        level = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items()) / window
        if level < below or time.monotonic() - started >= timeout:
            break
    return {"waited_s": round(time.monotonic() - started, 1), "others_cpu": round(level, 3)}
