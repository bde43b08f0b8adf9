"""How big and how long each measure is: full, --quick, --scale, --smoke."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Plan:
    # Measure 1: relay throughput and round trip.
    pairs: int = 50
    inflight: int = 4
    # Every n-th message is SDP-sized (~1.2 KB), the rest ICE-sized (~100 B).
    sdp_every: int = 2
    relay_warmup_s: float = 2.0
    relay_duration_s: float = 8.0
    # Measures 2 and 3: the storm and the idle connections it leaves.
    idle_clients: int = 15_000
    # Clients between "connect" and "acknowledged" at once.
    storm_window: int = 500
    storm_timeout_s: float = 150.0
    # Measure 4: full handshakes.
    handshake_workers: int = 20
    handshake_warmup_s: float = 2.0
    handshake_duration_s: float = 8.0
    # Measure 5: cross-instance latency probe (one pair, one frame in flight).
    latency_duration_s: float = 4.0
    # Waiting for a server to finish off a phase before the next one.
    settle_timeout_s: float = 60.0
    # The driver's WebSocket client: "wire" (bench/driver/wire.mjs, cheap) or
    # "ws" (the npm package, to cross-check).
    client: str = "wire"
    # Waiting, before each measured phase, for processes we did not start
    # (a shared machine) to go quiet.
    quiet_timeout_s: float = 30.0

    def scaled(self, factor: float) -> Plan:
        """Shrink (or grow) the number of idle clients; durations stay."""
        return replace(self, idle_clients=max(10, int(self.idle_clients * factor)))


FULL = Plan()

# About half the time of a full run: every window shorter.
QUICK = replace(
    FULL,
    relay_warmup_s=1.0,
    relay_duration_s=4.0,
    handshake_warmup_s=1.0,
    handshake_duration_s=4.0,
    latency_duration_s=2.0,
    storm_timeout_s=90.0,
    settle_timeout_s=30.0,
    quiet_timeout_s=15.0,
)

# Seconds, for the test suite: proves every measure still runs end to end.
SMOKE = Plan(
    pairs=2,
    inflight=2,
    relay_warmup_s=0.3,
    relay_duration_s=1.0,
    idle_clients=40,
    storm_window=10,
    storm_timeout_s=20.0,
    handshake_workers=2,
    handshake_warmup_s=0.2,
    handshake_duration_s=1.0,
    latency_duration_s=0.5,
    settle_timeout_s=5.0,
    # Proves the code runs; its figures are not compared.
    quiet_timeout_s=0.0,
)
