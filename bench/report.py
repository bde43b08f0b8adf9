"""The results table (ours, PeerJS, ratio, target) and its JSON form."""

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
