"""Prometheus metrics of this process, and who may read them.

Every figure is per process (prometheus_client's default registry): scrape
each instance, and sum across them in queries. The consumer calls the small
functions below at the points where things happen; the two gauges are read
from live state at scrape time, so they cannot drift.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import time
from bisect import bisect_left
from collections.abc import Iterable
from itertools import accumulate

from prometheus_client import REGISTRY, Counter, Gauge, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from signaling.core import peerjs
from signaling.core.protocol import RELAY_TYPES, ErrorCode, Message, MessageType, SignIn
from signaling.presence.registry import ReclaimOutcome, registry
from signaling.ws import guards

# The *_created series (when each counter was made) double the output and
# tell nothing the process start time does not.
disable_created_metrics()

CONNECTIONS_OPEN = Gauge(
    "signaling_connections_open",
    "WebSocket connections open on this process, signed in or not.",
)
# The same count the connection caps are enforced on.
CONNECTIONS_OPEN.set_function(lambda: guards.connections.open)

USERS_SIGNED_IN = Gauge(
    "signaling_users_signed_in",
    "Users signed in on this process.",
)
USERS_SIGNED_IN.set_function(lambda: len(registry))

READY = Gauge(
    "signaling_ready",
    "1 when a readiness check passed at this scrape, 0 when it failed or "
    "timed out: database, channel_layer (what /healthz checks).",
    ["check"],
)

SIGN_INS = Counter(
    "signaling_sign_ins",
    "Sign-in attempts by protocol (app, or peerjs: a PeerJS handshake) and "
    "outcome: ok, replaced (took a name over from another connection) or the "
    "error code or reason that refused it.",
    ["protocol", "outcome"],
)
ERRORS = Counter(
    "signaling_errors",
    "Error frames sent to clients, by code.",
    ["code"],
)
LAYER_FAILURES = Counter(
    "signaling_channel_layer_failures",
    "Channel layer (or Redis presence) operations that failed, by operation: "
    "receive, send, full (target channel full), request (a sign-in or look-up), "
    "release.",
    ["operation"],
)
PRESENCE_LOSSES = Counter(
    "signaling_presence_losses",
    "Times this process found that Redis had lost or changed its data (a "
    "restart, a failover, or this process's key expiring) while it served "
    "sessions.",
)
RECLAIMS = Counter(
    "signaling_presence_reclaims",
    "Sessions claimed again after a presence loss, by outcome: kept, taken "
    "(another sign-in took the name meanwhile; closed as replaced) or "
    "abandoned (could not be claimed in time; told to reconnect and closed).",
    ["outcome"],
)
RECLAIM_ATTEMPTS = Counter(
    "signaling_presence_reclaim_attempts",
    "Re-claim attempts, first tries and retries after a failed attempt.",
    ["attempt"],
)
RECLAIM_FAILURES = Counter(
    "signaling_presence_reclaim_failures",
    "Re-claim attempts that failed (retried at the next beat).",
)
DUPLICATES_DROPPED = Counter(
    "signaling_duplicate_relays_dropped",
    "Relays delivered a second time by the channel layer (Redis after a "
    "failover) and dropped before reaching the client.",
)
CLAIMS_WAITED = Counter(
    "signaling_presence_claims_waited",
    "Sign-ins that waited for the name's holder to be re-claimed after Redis "
    "lost its data.",
)


class RelayStats:
    """One protocol's relayed frames (by type) and relay times, counted in
    plain numbers and turned into metrics by RelayCollector when scraped.

    As a prometheus_client Counter and Histogram they were a noticeable
    share of a relayed frame's cost: a lock per increment, three per relay,
    and the buckets walked in Python. Only the event loop's thread relays, so plain
    numbers count exactly; a scrape (any thread) copies the histogram in one
    step, so its buckets, count and sum agree with each other.
    """

    def __init__(
        self, protocol: str, kinds: Iterable[enum.Enum], bounds: tuple[float, ...]
    ) -> None:
        self.protocol = protocol
        self.bounds = bounds
        self.frames = dict.fromkeys(sorted(kinds, key=lambda kind: kind.value), 0)
        # One slot per bucket (not cumulative), one above the last bound,
        # then the sum of all observations.
        self.histogram: list[float] = [0] * (len(bounds) + 1) + [0.0]

    def relayed(self, kind: enum.Enum, seconds: float) -> None:
        self.frames[kind] += 1
        histogram = self.histogram
        # A bucket counts observations <= its bound, as Histogram.observe.
        histogram[bisect_left(self.bounds, seconds)] += 1
        histogram[-1] += seconds


class RelayCollector:
    """``signaling_relayed_frames`` (by protocol and type) and
    ``signaling_relay_seconds`` (by protocol) from each protocol's stats."""

    def __init__(self, *stats: RelayStats) -> None:
        self.stats = stats

    def collect(self):
        frames = CounterMetricFamily(
            "signaling_relayed_frames",
            "Frames handed to the channel layer for their target, by protocol "
            "and type.",
            labels=["protocol", "type"],
        )
        seconds = HistogramMetricFamily(
            "signaling_relay_seconds",
            "Time from a validated relay frame to the channel layer accepting it "
            "for the target: the target look-up plus the layer's send (each a "
            "Redis round trip with REDIS_URL). Excludes time queued in Daphne and "
            "delivery.",
            labels=["protocol"],
        )
        for stats in self.stats:
            for kind, count in list(stats.frames.items()):
                frames.add_metric([stats.protocol, kind.value], count)
            snapshot = list(stats.histogram)
            cumulative = list(accumulate(snapshot[:-1]))
            labels = [floatToGoString(bound) for bound in stats.bounds] + ["+Inf"]
            seconds.add_metric(
                [stats.protocol], list(zip(labels, cumulative)), sum_value=snapshot[-1]
            )
        return [frames, seconds]


RELAY_SECONDS_BOUNDS = (
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0
)
RELAYS = RelayStats("app", RELAY_TYPES, RELAY_SECONDS_BOUNDS)
PEERJS_RELAYS = RelayStats("peerjs", peerjs.RELAY_TYPES, RELAY_SECONDS_BOUNDS)
REGISTRY.register(RelayCollector(RELAYS, PEERJS_RELAYS))

# Children bound once: labels() takes a lock and a dict look-up per call.
_ERRORS = {code: ERRORS.labels(code=code.value) for code in ErrorCode}
_SIGNED_IN = {
    (protocol, replaced): SIGN_INS.labels(
        protocol=protocol, outcome="replaced" if replaced else "ok"
    )
    for protocol in ("app", "peerjs")
    for replaced in (False, True)
}
for _operation in ("receive", "send", "full", "request", "release"):
    LAYER_FAILURES.labels(operation=_operation)


for _attempt in ("first", "retry"):
    RECLAIM_ATTEMPTS.labels(attempt=_attempt)
for _outcome in ReclaimOutcome:
    RECLAIMS.labels(outcome=_outcome.value)


def presence_lost() -> None:
    PRESENCE_LOSSES.inc()


def presence_reclaim_attempted(*, retry: bool) -> None:
    RECLAIM_ATTEMPTS.labels(attempt="retry" if retry else "first").inc()


def presence_reclaim_failed() -> None:
    RECLAIM_FAILURES.inc()


def presence_reclaimed(outcome: ReclaimOutcome) -> None:
    RECLAIMS.labels(outcome=outcome.value).inc()


def presence_claim_waited() -> None:
    CLAIMS_WAITED.inc()


def duplicate_dropped() -> None:
    DUPLICATES_DROPPED.inc()


def readiness_observed(results: dict) -> None:
    """Called by /metrics with the readiness checks it just ran."""
    for check, result in results.items():
        READY.labels(check=check).set(1 if result["ok"] else 0)


def sign_in_succeeded(*, replaced: bool, protocol: str = "app") -> None:
    _SIGNED_IN[protocol, replaced].inc()


def request_failed(message: Message | None, code: ErrorCode) -> None:
    """Called when a client frame was refused; counts failed sign-ins."""
    if isinstance(message, SignIn):
        SIGN_INS.labels(protocol="app", outcome=code.value).inc()


def peerjs_handshake_refused(reason: str) -> None:
    """A PeerJS handshake refused: ``reason`` is an error code or id_taken."""
    SIGN_INS.labels(protocol="peerjs", outcome=reason).inc()


def relayed(kind: MessageType, *, started: float) -> None:
    """Called when a relay was handed over; ``started`` is a perf_counter()."""
    RELAYS.relayed(kind, time.perf_counter() - started)


def error_sent(code: ErrorCode) -> None:
    _ERRORS[code].inc()


def layer_failed(operation: str) -> None:
    LAYER_FAILURES.labels(operation=operation).inc()


# Access to /metrics.


def parse_networks(
    values: Iterable[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Parse addresses and CIDR ranges; raise ValueError for a bad one."""
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def access_status(
    *,
    token: str,
    allowed: Iterable[str],
    authorization: str | None,
    address: str,
) -> int:
    """Return the HTTP status for a metrics request: 200 to serve it.

    404 when neither a token nor addresses are configured (metrics off);
    401 when a token is configured and the request's bearer token is missing
    or wrong; 403 when addresses are configured and the client is not among
    them. When both are configured both must pass.
    """
    allowed = list(allowed)
    if not token and not allowed:
        return 404
    if allowed:
        try:
            client = ipaddress.ip_address(address)
        except ValueError:
            return 403
        if not any(client in network for network in parse_networks(allowed)):
            return 403
    if token:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode("utf-8"), token.encode("utf-8")
        ):
            return 401
    return 200


# What only the PeerJS protocol has (ws/peerjs_consumer.py); its sign-ins and
# relays are counted in the shared families above, labelled protocol="peerjs".

PEERJS_EVENTS = Counter(
    "signaling_peerjs_events",
    "PeerJS protocol events by kind: queued (for an id not connected), "
    "expired (a sender told EXPIRE), ignored_<reason> (frames dropped without "
    "an answer).",
    ["event"],
)


# Each event's series, looked up once: labels() takes a lock and builds its
# key on every call, and every ignored frame (a flood of bad ones included)
# counts one event. The events are a short fixed list (the reasons above),
# so the cache stays small.
_peerjs_series: dict[str, Counter] = {}


def _peerjs_event(event: str) -> None:
    series = _peerjs_series.get(event)
    if series is None:
        series = _peerjs_series[event] = PEERJS_EVENTS.labels(event=event)
    series.inc()


def peerjs_relayed(kind: enum.Enum, *, started: float) -> None:
    """Called when a PeerJS relay was handed over; ``started`` is a
    perf_counter()."""
    PEERJS_RELAYS.relayed(kind, time.perf_counter() - started)


def peerjs_queued() -> None:
    _peerjs_event("queued")


def peerjs_expired() -> None:
    _peerjs_event("expired")


def peerjs_ignored(reason: str) -> None:
    _peerjs_event("ignored_" + reason)
