"""The measures, run against one started server at a time.

Order within one server's suite: relay with 100 online, full handshakes,
then the sign-in storm (its clients stay online), memory per idle client,
and relay again with the storm's clients online. Each phase waits for the
server to go quiet first, so that none pays for the previous one's backlog.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from bench.plan import Plan
from bench.runner import DriverError, IdleHolder, run_measured
from bench.servers import ServerProcess, start_ours, start_redis
from bench.system import fresh_source_addresses, rss_kib, wait_for_quiet_machine, wait_until_quiet

logger = logging.getLogger("bench")


def _guarded(name: str, phase: Callable[[], dict[str, Any]], *,
             ours: set[int] | None = None, quiet_timeout_s: float = 0.0) -> dict[str, Any]:
    """Run a phase; a failure becomes an ``error`` entry, not a lost run.

    With ``ours`` (the PIDs we started), the phase first waits, boundedly,
    for everything else on the machine to go quiet.
    """
    quiet = (
        wait_for_quiet_machine(ours, timeout=quiet_timeout_s)
        if ours is not None and quiet_timeout_s > 0
        else None
    )
    if quiet and quiet["others_cpu"] >= 0.1:
        logger.warning("  machine still busy (others use %.2f of a core); measuring anyway",
                       quiet["others_cpu"])
    started = time.monotonic()
    logger.info("  %s ...", name)
    try:
        result = phase()
    except (DriverError, RuntimeError, OSError) as error:
        result = {"error": f"{type(error).__name__}: {error}"}
    result["wall_s"] = round(time.monotonic() - started, 1)
    if quiet is not None:
        result["quiet_before"] = quiet
    if "error" in result:
        logger.warning("  %s failed: %s", name, result["error"])
    return result


def relay(server: ServerProcess, plan: Plan, *, prefix: str, server_b: ServerProcess | None = None,
          pairs: int | None = None, inflight: int | None = None, sdp_every: int | None = None,
          warmup_s: float | None = None, duration_s: float | None = None,
          watch: dict[str, list[int]] | None = None) -> dict[str, Any]:
    warmup = plan.relay_warmup_s if warmup_s is None else warmup_s
    duration = plan.relay_duration_s if duration_s is None else duration_s
    servers = [server] if server_b is None or server_b is server else [server, server_b]
    return run_measured(
        "relay",
        {
            "protocol": server.protocol,
            "client": plan.client,
            "server": server.address,
            "serverB": (server_b or server).address,
            "pairs": pairs or plan.pairs,
            "inflight": inflight or plan.inflight,
            "sdpEvery": plan.sdp_every if sdp_every is None else sdp_every,
            "warmupMs": int(warmup * 1000),
            "durationMs": int(duration * 1000),
            "prefix": prefix,
            "sources": fresh_source_addresses(),
        },
        watch={"server": [s.pid for s in servers], **(watch or {})},
        budget_seconds=warmup + duration + 90,
    )


def handshakes(server: ServerProcess, plan: Plan) -> dict[str, Any]:
    return run_measured(
        "handshake",
        {
            "protocol": server.protocol,
            "client": plan.client,
            "server": server.address,
            "workers": plan.handshake_workers,
            "warmupMs": int(plan.handshake_warmup_s * 1000),
            "durationMs": int(plan.handshake_duration_s * 1000),
            "prefix": "h",
            "sources": fresh_source_addresses(),
        },
        watch={"server": [server.pid]},
        budget_seconds=plan.handshake_warmup_s + plan.handshake_duration_s + 90,
    )


def server_suite(server: ServerProcess, plan: Plan) -> dict[str, Any]:
    """Measures 1 to 4 against one server; the server is stopped at the end."""
    results: dict[str, Any] = {"server": server.name, "protocol": server.protocol,
                               "backlog": server.extra.get("backlog")}
    quiet = lambda: wait_until_quiet([server.pid], timeout=plan.settle_timeout_s)  # noqa: E731
    try:
        results["relay_latency"] = _guarded(
            "unloaded relay latency (1 pair, 1 in flight)",
            lambda: relay(server, plan, prefix="lat", pairs=1, inflight=1, sdp_every=0,
                          warmup_s=0.5, duration_s=plan.latency_duration_s),
            ours={server.pid},
            quiet_timeout_s=plan.quiet_timeout_s,
        )
        quiet()
        results["relay_online"] = _guarded(
            f"relay, {plan.pairs * 2} online", lambda: relay(server, plan, prefix="ra"),
            ours={server.pid},
            quiet_timeout_s=plan.quiet_timeout_s,
        )
        quiet()
        results["handshake"] = _guarded("full handshakes", lambda: handshakes(server, plan),
                                        ours={server.pid}, quiet_timeout_s=plan.quiet_timeout_s)
        results["settle_after_handshakes_s"] = quiet()
        _storm_memory_and_loaded_relay(server, plan, results, quiet)
    finally:
        server.stop()
    results["log_tracebacks"] = server.count_in_log("Traceback")
    return results


def _storm_memory_and_loaded_relay(server: ServerProcess, plan: Plan, results: dict[str, Any],
                                   quiet: Callable[[], float]) -> None:
    quiet_before_storm = (
        wait_for_quiet_machine({server.pid}, timeout=plan.quiet_timeout_s)
        if plan.quiet_timeout_s > 0
        else None
    )
    rss_before = rss_kib(server.pid)
    holder = IdleHolder(
        {
            "protocol": server.protocol,
            "client": plan.client,
            "server": server.address,
            "count": plan.idle_clients,
            "window": plan.storm_window,
            "prefix": "idle",
            "sources": fresh_source_addresses(),
        },
        storm_timeout_seconds=plan.storm_timeout_s,
        watch={"server": [server.pid]},
    )
    try:
        storm = _guarded(f"sign-in storm, {plan.idle_clients} clients", holder.wait_ready)
        storm["quiet_before"] = quiet_before_storm
        results["storm"] = storm
        if "error" in storm:
            return
        settle = quiet()
        rss_after = rss_kib(server.pid)
        acked = storm["acked"]
        results["memory"] = {
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "idle_clients": acked,
            "kib_per_client": round((rss_after - rss_before) / acked, 2) if acked else None,
            "settle_s": settle,
        }
        online = acked + plan.pairs * 2
        results["relay_loaded"] = _guarded(
            f"relay, {online} online",
            lambda: relay(server, plan, prefix="rb", watch={"driver": [holder.pid]}),
            ours={server.pid, holder.pid},
            quiet_timeout_s=plan.quiet_timeout_s,
        )
        results["relay_loaded"]["idle_online"] = acked
        try:
            results["idle_still_open"] = holder.open_count()
        except DriverError as error:
            results["idle_still_open"] = f"unknown: {error}"
    finally:
        # Stopping the server first is faster than 15 000 polite closes, and
        # the close storm is not a measure.
        server.stop()
        holder.close()


def cross_instance(plan: Plan, run_dir: Path, database_url: str, source: Path) -> dict[str, Any]:
    """Measure 5 (ours only): relay latency across two instances via Redis.

    One pair, one ICE-sized frame in flight, so the figure is latency, not
    queueing. Compared with the same pair on one instance with the same
    Redis layer; the added one-way latency is half the round-trip difference.
    """
    redis = start_redis(run_dir)
    instances: list[ServerProcess] = []
    try:
        redis_url = f"redis://127.0.0.1:{redis.port}/0"
        for index in (1, 2):
            instances.append(
                start_ours(run_dir, database_url=database_url, name=f"ours-redis-{index}",
                           redis_url=redis_url, source=source)
            )
        first, second = instances
        probe = dict(pairs=1, inflight=1, sdp_every=0, warmup_s=0.5,
                     duration_s=plan.latency_duration_s, watch={"redis": [redis.pid]})
        ours = {redis.pid, first.pid, second.pid}
        same = _guarded("one instance via Redis",
                        lambda: relay(first, plan, prefix="xs", **probe),
                        ours=ours, quiet_timeout_s=plan.quiet_timeout_s)
        across = _guarded("two instances via Redis",
                          lambda: relay(first, plan, prefix="xc", server_b=second, **probe),
                          ours=ours, quiet_timeout_s=plan.quiet_timeout_s)
    finally:
        for process in [*instances, redis]:
            process.stop()
    result: dict[str, Any] = {"same_instance": same, "cross_instance": across}
    if across.get("error") == "target_not_found":
        result["supported"] = False
        result["note"] = (
            "not supported yet: a relay to a user signed in on the other instance "
            "answers target_not_found (presence is per process)"
        )
    elif "error" in across or "error" in same:
        result["supported"] = None
    else:
        result["supported"] = True
        result["added_one_way_p50_ms"] = round(
            (across["rtt"]["p50_ms"] - same["rtt"]["p50_ms"]) / 2, 3
        )
    return result
