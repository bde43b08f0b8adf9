"""The results tables and their JSON form: ours vs PeerJS (ratio, target),
and the PeerJS protocol on our server ("ours-peerjs") vs PeerJS and vs ours."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

# A window where the driver used this much of its core set the pace itself.
DRIVER_BOUND_CPU = 0.9
# Processes we did not start using this much CPU competed with ours.
DISTURBED_CPU = 0.1


def _get(data: dict[str, Any] | None, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


@dataclass(frozen=True)
class Row:
    label: str
    # Where the figure is in one server's results.
    path: tuple[str, ...]
    # The measure's window, for validity flags (driver-bound, disturbed).
    window: tuple[str, ...] | None
    unit: str = ""
    target: str = ""
    check: Callable[[float, dict[str, Any]], bool] | None = None


def _relay_ratio(value: float, ours: dict[str, Any]) -> bool:
    base = _get(ours, "relay_online", "msgs_per_s")
    return bool(base) and value >= 10_000 and value >= 0.8 * base


def rows(plan: dict[str, Any]) -> list[Row]:
    """The table's rows, labelled with this run's scale."""
    active = f"{plan.get('pairs', 50) * 2} online"
    idle = plan.get("idle_clients", 15_000)
    loaded = f"{idle / 1000:g}k online" if idle >= 1000 else f"{idle + plan.get('pairs', 50) * 2} online"
    return [
        replace(row, label=row.label.replace("100 online", active).replace("15k online", loaded))
        for row in ROWS
    ]


ROWS = [
    Row("relay msg/s, 100 online", ("relay_online", "msgs_per_s"), ("relay_online",),
        target=">= 10k", check=lambda v, _: v >= 10_000),
    Row("relay RTT p50 ms, 100 online", ("relay_online", "rtt", "p50_ms"), ("relay_online",)),
    Row("relay RTT p99 ms, 100 online", ("relay_online", "rtt", "p99_ms"), ("relay_online",)),
    Row("relay msg/s, 15k online", ("relay_loaded", "msgs_per_s"), ("relay_loaded",),
        target=">= 10k and >= 0.8x 100-online", check=_relay_ratio),
    Row("relay RTT p50 ms, 15k online", ("relay_loaded", "rtt", "p50_ms"), ("relay_loaded",)),
    Row("relay RTT p99 ms, 15k online", ("relay_loaded", "rtt", "p99_ms"), ("relay_loaded",),
        target="<= 50", check=lambda v, _: v <= 50),
    Row("idle clients signed in by the storm", ("storm", "acked"), None),
    Row("sign-ins/s, storm", ("storm", "signins_per_s"), ("storm",),
        target=">= 3.4k", check=lambda v, ours: v >= 3_400 and bool(_get(ours, "storm", "complete"))),
    Row("sign-in p99 ms, storm", ("storm", "latency", "p99_ms"), ("storm",)),
    Row("KB per idle signed-in connection", ("memory", "kib_per_client"), None,
        target="<= 16", check=lambda v, _: v <= 16),
    Row("full handshakes/s", ("handshake", "handshakes_per_s"), ("handshake",),
        target=">= 700", check=lambda v, _: v >= 700),
    Row("unloaded relay RTT p50 ms", ("relay_latency", "rtt", "p50_ms"), ("relay_latency",)),
]


def flags(results: dict[str, Any] | None, window: tuple[str, ...] | None) -> list[str]:
    """Why a figure may not be trusted: errors, a driver-bound or disturbed window."""
    if results is None or window is None:
        return []
    measure = _get(results, *window)
    if not isinstance(measure, dict):
        return []
    found = []
    if "error" in measure:
        found.append("error")
    cpu = measure.get("cpu") or {}
    if cpu.get("driver_cpu", 0) >= DRIVER_BOUND_CPU:
        found.append("driver-bound")
    if cpu.get("others_cpu", 0) >= DISTURBED_CPU:
        found.append("disturbed")
    if window == ("storm",) and measure.get("complete") is False:
        found.append("incomplete")
    return found


def _short_of(results: dict[str, Any] | None, row: Row, plan: dict[str, Any]) -> list[str]:
    """The loaded relay ran with fewer online than planned (incomplete storm)."""
    if results is None or row.window != ("relay_loaded",):
        return []
    idle = _get(results, "relay_loaded", "idle_online")
    if idle is None or idle >= plan.get("idle_clients", 0):
        return []
    return [f"only {idle + plan.get('pairs', 50) * 2:,} online"]


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(results: dict[str, Any]) -> str:
    ours = results.get("servers", {}).get("ours")
    peer = results.get("servers", {}).get("peerjs")
    header = ("measure", "ours", "PeerJS", "ours/PeerJS", "target", "ours meets")
    lines = [header]
    for row in rows(results.get("plan", {})):
        ours_value = _get(ours, *row.path)
        peer_value = _get(peer, *row.path)
        ratio = (
            f"{ours_value / peer_value:.2f}x"
            if isinstance(ours_value, (int, float)) and isinstance(peer_value, (int, float)) and peer_value
            else "-"
        )
        verdict = ""
        if row.check is not None and isinstance(ours_value, (int, float)):
            verdict = "yes" if row.check(ours_value, ours or {}) else "NO"
        ours_flags = flags(ours, row.window) + _short_of(ours, row, results.get("plan", {}))
        peer_flags = flags(peer, row.window) + _short_of(peer, row, results.get("plan", {}))
        lines.append((
            row.label,
            _format(ours_value) + (f" [{','.join(ours_flags)}]" if ours_flags else ""),
            _format(peer_value) + (f" [{','.join(peer_flags)}]" if peer_flags else ""),
            ratio,
            row.target,
            verdict,
        ))
    cross = results.get("cross_instance")
    if cross is not None:
        if cross.get("supported") is True:
            value = _format(cross["added_one_way_p50_ms"])
            verdict = "yes" if cross["added_one_way_p50_ms"] <= 2 else "NO"
        elif cross.get("supported") is False:
            value, verdict = "not supported yet", "NO"
        else:
            value, verdict = "error", "NO"
        lines.append(("cross-instance added p50 ms (Redis)", value, "n/a", "-", "<= 2", verdict))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines
    ]
    rendered.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(rendered)


@dataclass(frozen=True)
class RatioTarget:
    """A target on a ratio of two servers' figures in the same run."""

    text: str
    bound: float
    # True: the ratio must be at least ``bound`` (more is better); False: at
    # most (latency, memory: less is better).
    at_least: bool

    def met(self, ratio: float) -> bool:
        return ratio >= self.bound if self.at_least else ratio <= self.bound


def _at_least(bound: float) -> RatioTarget:
    return RatioTarget(f">= {bound:g}x", bound, True)


def _at_most(bound: float) -> RatioTarget:
    return RatioTarget(f"<= {bound:g}x", bound, False)


# Issue 17: ours-peerjs as a ratio to peerjs-server in the same run.
PEERJS_PROTOCOL_VS_PEERJS = {
    ("relay_online", "msgs_per_s"): _at_least(0.6),
    ("relay_loaded", "msgs_per_s"): _at_least(0.6),
    ("relay_loaded", "rtt", "p99_ms"): _at_most(2),
    ("storm", "signins_per_s"): _at_least(0.75),
    ("handshake", "handshakes_per_s"): _at_least(0.5),
}
# Issue 17: no measure more than 10 % worse than our own protocol's figure in
# the same run (10 % less throughput, or 10 % more latency or memory).
PEERJS_PROTOCOL_VS_OURS = {
    ("relay_online", "msgs_per_s"): _at_least(0.9),
    ("relay_online", "rtt", "p99_ms"): _at_most(1.1),
    ("relay_loaded", "msgs_per_s"): _at_least(0.9),
    ("relay_loaded", "rtt", "p99_ms"): _at_most(1.1),
    ("storm", "signins_per_s"): _at_least(0.9),
    ("memory", "kib_per_client"): _at_most(1.1),
    ("handshake", "handshakes_per_s"): _at_least(0.9),
}


def _ratio(value: Any, base: Any) -> float | None:
    if isinstance(value, (int, float)) and isinstance(base, (int, float)) and base:
        return value / base
    return None


def _versus(value: Any, base: Any, target: RatioTarget | None,
            measured: dict[str, Any] | None, row: Row) -> dict[str, Any]:
    ratio = _ratio(value, base)
    met = None
    if target is not None and ratio is not None:
        met = target.met(ratio)
        # A storm that hit its cap did not sign everyone in: no pass.
        if row.window == ("storm",) and _get(measured, "storm", "complete") is False:
            met = False
    return {
        "ratio": round(ratio, 3) if ratio is not None else None,
        "target": target.text if target else None,
        "met": met,
    }


# Server CPU per operation (us): the server's share of a core over the
# window divided by the rate. Less at the mercy of a busy machine than the
# rates themselves (a disturbed server does less, but each operation costs
# about the same); untargeted, for diagnosis.
CPU_PER_OPERATION = (
    ("server CPU us per relayed msg, 100 online", "relay_online", "msgs_per_s"),
    ("server CPU us per relayed msg, 15k online", "relay_loaded", "msgs_per_s"),
    ("server CPU us per sign-in, storm", "storm", "signins_per_s"),
    ("server CPU us per full handshake", "handshake", "handshakes_per_s"),
)


def cpu_per_operation(suite: dict[str, Any] | None) -> dict[str, float | None]:
    """``{window: us}`` of server CPU per operation for one server."""
    found: dict[str, float | None] = {}
    for _, window, rate_key in CPU_PER_OPERATION:
        share = _get(suite, window, "cpu", "server_cpu")
        rate = _get(suite, window, rate_key)
        found[window] = (
            round(share / rate * 1e6, 1)
            if isinstance(share, (int, float)) and isinstance(rate, (int, float)) and rate
            else None
        )
    return found


def _cpu_rows(plan: dict[str, Any]) -> list[Row]:
    """Rows for CPU_PER_OPERATION, labelled with this run's scale as rows() does."""
    active = f"{plan.get('pairs', 50) * 2} online"
    idle = plan.get("idle_clients", 15_000)
    loaded = f"{idle / 1000:g}k online" if idle >= 1000 else f"{idle + plan.get('pairs', 50) * 2} online"
    return [
        Row(label.replace("100 online", active).replace("15k online", loaded),
            ("cpu_per_operation_us", window), (window,))
        for label, window, _ in CPU_PER_OPERATION
    ]


def peerjs_protocol(results: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The PeerJS protocol on our server ("ours-peerjs") against
    peerjs-server and against our own protocol ("ours"), row by row, with
    issue 17's targets; None when ours-peerjs did not run."""
    servers = results.get("servers", {})
    mine = servers.get("ours-peerjs")
    if mine is None:
        return None
    plan = results.get("plan", {})

    def with_cpu(suite: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if suite is None else {**suite, "cpu_per_operation_us": cpu_per_operation(suite)}

    mine, peer, ours = with_cpu(mine), with_cpu(servers.get("peerjs")), with_cpu(servers.get("ours"))
    compared = []
    for row in rows(plan) + _cpu_rows(plan):
        value = _get(mine, *row.path)
        compared.append({
            "measure": row.label,
            "path": list(row.path),
            "ours-peerjs": value,
            "peerjs": _get(peer, *row.path),
            "ours": _get(ours, *row.path),
            "flags": {
                name: flags(suite, row.window) + _short_of(suite, row, plan)
                for name, suite in (("ours-peerjs", mine), ("peerjs", peer), ("ours", ours))
                if suite is not None
            },
            "vs_peerjs": _versus(value, _get(peer, *row.path),
                                 PEERJS_PROTOCOL_VS_PEERJS.get(row.path), mine, row),
            "vs_ours": _versus(value, _get(ours, *row.path),
                               PEERJS_PROTOCOL_VS_OURS.get(row.path), mine, row),
        })
    return compared


def peerjs_protocol_table(results: dict[str, Any]) -> str | None:
    """The second table: ours-peerjs, PeerJS, ours, the two ratios, targets."""
    compared = results.get("peerjs_protocol") or peerjs_protocol(results)
    if not compared:
        return None
    header = ("PeerJS protocol", "ours-peerjs", "PeerJS", "vs PeerJS", "target", "met",
              "ours", "vs ours", "target", "met")

    def cell(entry: dict[str, Any], name: str) -> str:
        marks = entry["flags"].get(name) or []
        return _format(entry[name]) + (f" [{','.join(marks)}]" if marks else "")

    def versus(part: dict[str, Any]) -> tuple[str, str, str]:
        ratio = f"{part['ratio']:.2f}x" if part["ratio"] is not None else "-"
        met = "" if part["met"] is None else "yes" if part["met"] else "NO"
        return ratio, part["target"] or "", met

    lines = [header]
    for entry in compared:
        lines.append((
            entry["measure"], cell(entry, "ours-peerjs"), cell(entry, "peerjs"),
            *versus(entry["vs_peerjs"]), cell(entry, "ours"), *versus(entry["vs_ours"]),
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines
    ]
    rendered.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(rendered)


def notes(results: dict[str, Any]) -> list[str]:
    """Plain-language warnings that belong under the table."""
    found = []
    for name, server in results.get("servers", {}).items():
        for row in ROWS:
            for flag in flags(server, row.window):
                if flag == "error":
                    found.append(f"{name}: {row.label}: {_get(server, *row.window, 'error')}")
        if server.get("idle_still_open") not in (None, _get(server, "storm", "acked")):
            found.append(
                f"{name}: only {server['idle_still_open']} of {_get(server, 'storm', 'acked')} "
                "idle clients were still connected after the loaded relay"
            )
        if server.get("log_tracebacks"):
            found.append(f"{name}: {server['log_tracebacks']} tracebacks in the server log")
    cross = results.get("cross_instance") or {}
    if cross.get("note"):
        found.append(f"ours: cross-instance: {cross['note']}")
    for part in ("same_instance", "cross_instance"):
        if _get(cross, part, "error") not in (None, "target_not_found"):
            found.append(f"ours: cross-instance {part}: {cross[part]['error']}")
    found = list(dict.fromkeys(found))
    if any("driver-bound" in flags(s, r.window) for s in results.get("servers", {}).values() for r in ROWS):
        found.append("[driver-bound]: the load driver used >= 90% of its core; that figure is void "
                     "(a floor for the server, not its capacity).")
    if any("disturbed" in flags(s, r.window) for s in results.get("servers", {}).values() for r in ROWS):
        found.append("[disturbed]: other processes on this machine used >= 10% of a core during "
                     "that window; rerun on a quiet machine before comparing.")
    return found


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
