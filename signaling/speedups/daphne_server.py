"""Process-wide tuning applied once the application is loaded.

Measured with bench/ (see the README's performance section).
"""

from __future__ import annotations

import gc
import logging
import sys

from django.conf import settings

from signaling.speedups import autobahn_frames as websocket_frames
from signaling.speedups import cpython_gc as collector
from signaling.speedups import daphne_footprint as connection_footprint
from signaling.speedups import twisted_reactor as reactor_tuning
from signaling.speedups import twisted_uvloop as event_loop
from signaling.speedups import twisted_web_handoff as websocket_handoff


def apply() -> None:
    event_loop.apply(settings.SIGNALING_EVENT_LOOP)
    _lighten_log_records()
    _quiet_autobahn_debug_formatting()
    _tune_garbage_collector()
    # Before the housekeeping patch, which wraps create_application.
    connection_footprint.apply()
    _patch_daphne_housekeeping()
    _wait_longer_for_close_replies()
    _hash_connections_natively()
    reactor_tuning.apply()
    websocket_handoff.apply()
    websocket_frames.apply()


# How long the server waits for a client to answer its close frame before
# dropping the socket. Autobahn's default is 1 s and its timers are batched
# into whole seconds, so the wait was anywhere between 0 and 1 s: a client
# busy writing (a flooder closed with 4008) was cut off with a TCP reset,
# which discards what it had not read yet (its rate_limited Errors and the
# close frame), so it learnt nothing. Seen in 1 of ~20 flood tests.
CLOSE_HANDSHAKE_TIMEOUT_SECONDS = 5


def _wait_longer_for_close_replies() -> None:
    ws_protocol = sys.modules.get("daphne.ws_protocol")
    if ws_protocol is None:
        return
    factory_class = ws_protocol.WebSocketFactory
    if getattr(factory_class, "_signaling_patched", False):
        return
    original_init = factory_class.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.setProtocolOptions(closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT_SECONDS)

    factory_class.__init__ = __init__
    factory_class._signaling_patched = True


def _hash_connections_natively() -> None:
    # Daphne keys its connection table by protocol object, whose class
    # defines __hash__ and __eq__ in Python as identity: ~20 Python calls
    # per connection. object's own are the same identity, in C.
    ws_protocol = sys.modules.get("daphne.ws_protocol")
    if ws_protocol is None:
        return
    protocol_class = ws_protocol.WebSocketProtocol
    if "__hash__" in protocol_class.__dict__ and "__eq__" in protocol_class.__dict__:
        protocol_class.__hash__ = object.__hash__
        protocol_class.__eq__ = object.__eq__


def _lighten_log_records() -> None:
    # Every log record looks up the caller's file and line (a stack walk),
    # the thread, the process and its multiprocessing name; no format here
    # shows them, and they made a record cost 30 us (7 % of a full
    # handshake's CPU). The logging HOWTO's "Optimization" section names
    # these switches. A custom LOGGING format using %(lineno)d, %(thread)d
    # or %(process)d would show placeholders.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def _quiet_autobahn_debug_formatting() -> None:
    # Autobahn pretty-prints its whole configuration and transport details
    # on every connection, and highlights names for every frame it sends,
    # for debug log lines that are then discarded: 12 % of the event loop in
    # a sign-in storm, 2 % when relaying. Only under Daphne, and only when
    # Twisted's debug logging is off.
    if logging.getLogger("daphne").isEnabledFor(logging.DEBUG):
        return
    for name in ("autobahn.websocket.protocol", "autobahn.twisted.websocket"):
        module = sys.modules.get(name)
        for helper in ("pformat", "hltype", "hlval"):
            if module is not None and hasattr(module, helper):
                setattr(module, helper, _unformatted)


def _unformatted(value, *args, **kwargs) -> str:
    return ""


def _tune_garbage_collector() -> None:
    # Everything loaded so far (Django, the app) lives for the process's
    # lifetime: keep the collector from walking it again and again, and
    # collect the young generation less often (each connection allocates
    # many small long-lived objects). The middle generation is collected
    # every 5 young collections rather than 20: in a sign-in storm every
    # new connection survives into it, and at 20 each collection walked a
    # million objects (200-350 ms pauses); at 5 they stay under 100 ms for
    # the same total work.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 5, 100)
    # From then on, what survives is frozen out of the collector each
    # second, and collected in full once an hour (collector.py).
    collector.start(settings.SIGNALING_GC_FREEZE_SECONDS, settings.SIGNALING_GC_RECLAIM_SECONDS)


# Scope key holding the connection's Twisted transport under Daphne.
READ_PAUSE_SCOPE_KEY = "signaling.transport"

# How much Twisted reads from a WebSocket in one go (its default: 64 KiB).
# Autobahn parses every frame of a read, and the consumer handles them all,
# before anything else runs: a flooder's 64 KiB is ~800 small frames and
# ~15 ms during which the other clients wait. 4 KiB holds an SDP-sized
# frame or ~50 small ones; bigger messages take several reads. Once a
# client hits the rate limit its reads shrink to 2 KiB. Measured with
# bench/ (relay throughput unchanged) and tests/end_to_end/test_security.py (flood
# bystander p99 41.6 ms -> 2.3-5.8 ms against a 1.8 ms baseline).
WEBSOCKET_READ_BYTES = 4096
THROTTLED_READ_BYTES = 2048

# Daphne's timeout check visits every connection every 2 s in one go (and
# sends the pings that are due); split into this many slices, each
# connection still visited every 2 s. With 15 000 idle connections a slice
# of 8 took ~10 ms; 40 slices of ~2 ms stay out of the relay's tail.
TIMEOUT_CHECK_SLICES = 40

# How often closed connections are handed back (Daphne: every second). Until
# Daphne's application_checker reaps a connection that closed and whose
# application finished, its connection table keeps the protocol and the
# consumer alive: at ~800 closing connections a second that raised the
# memory high-water mark by ~8 MB (tests/end_to_end/test_leaks.py, 2,000 cycles: RSS
# +7.5-8.8 MB, its bound 8.7 MB; at 0.1 s +0.13-0.18 MB). Checking only the
# connections that changed (below) makes the shorter interval cheap.
APPLICATION_CHECK_SECONDS = 0.1


def _patch_daphne_housekeeping() -> None:
    """Make Daphne's periodic loops cost what changed, not what is open.

    Every second Daphne's application_checker walks every connection to reap
    finished applications (8.6 % of the event loop in a sign-in storm, and a
    stall of tens of milliseconds each second with 15 000 idle clients), and
    every 2 s timeout_checker walks them all at once. Here the first visits
    only connections that disconnected or whose application finished (and
    so can run every APPLICATION_CHECK_SECONDS), and the second is spread
    over the 2 s.
    """
    server_module = sys.modules.get("daphne.server")
    if server_module is None or getattr(server_module.Server, "_signaling_patched", False):
        return
    server_class = server_module.Server
    reactor = server_module.reactor
    original_disconnected = server_class.protocol_disconnected
    original_create = server_class.create_application
    original_checker = server_class.application_checker

    def due(server) -> set:
        try:
            return server._signaling_due
        except AttributeError:
            server._signaling_due = set()
            return server._signaling_due

    def protocol_disconnected(self, protocol):
        original_disconnected(self, protocol)
        due(self).add(protocol)

    def create_application(self, protocol, scope):
        # Lets the consumer stop reading from a flooding client's socket
        # (see READ_PAUSE_SCOPE_KEY): ASGI itself has no backpressure.
        transport = getattr(protocol, "transport", None)
        if transport is not None and hasattr(transport, "pauseProducing"):
            scope[READ_PAUSE_SCOPE_KEY] = transport
            if scope.get("type") == "websocket" and hasattr(transport, "bufferSize"):
                transport.bufferSize = WEBSOCKET_READ_BYTES
        queue = original_create(self, protocol, scope)
        details = self.connections.get(protocol)
        instance = details and details.get("application_instance")
        if instance is not None:
            instance.add_done_callback(lambda _future: due(self).add(protocol))
        return queue

    def application_checker(self):
        # Daphne's own checker, run over only the connections that need it:
        # it is handed a view of self.connections holding just those.
        candidates = due(self)
        everything = self.connections
        subset = {p: everything[p] for p in list(candidates) if p in everything}
        candidates.difference_update(p for p in list(candidates) if p not in everything)
        self.connections = _WriteThrough(subset, everything)
        try:
            with _no_reschedule(reactor):
                original_checker(self)
        finally:
            self.connections = everything
        # Still open (a disconnected app that has not finished yet): check
        # again next time; gone: forget.
        candidates.intersection_update(everything)
        reactor.callLater(APPLICATION_CHECK_SECONDS, self.application_checker)

    def timeout_checker(self):
        protocols = list(self.connections)
        index = self._signaling_timeout_slice = (
            getattr(self, "_signaling_timeout_slice", -1) + 1
        ) % TIMEOUT_CHECK_SLICES
        for protocol in protocols[index::TIMEOUT_CHECK_SLICES]:
            protocol.check_timeouts()
        reactor.callLater(2 / TIMEOUT_CHECK_SLICES, self.timeout_checker)

    server_class.protocol_disconnected = protocol_disconnected
    server_class.create_application = create_application
    server_class.application_checker = application_checker
    server_class.timeout_checker = timeout_checker
    server_class._signaling_patched = True


class _WriteThrough(dict):
    """A dict of some connections whose deletions also reach the full dict."""

    def __init__(self, subset, everything):
        super().__init__(subset)
        self._everything = everything

    def __delitem__(self, key):
        super().__delitem__(key)
        self._everything.pop(key, None)
        # Daphne drops a connection once it is closed and its application
        # finished: nothing reads the protocol object any more.
        connection_footprint.forget(key)


class _no_reschedule:
    """Swallow only the callLater with which Daphne's checker reschedules
    itself (the patched checker reschedules once, itself)."""

    def __init__(self, reactor):
        self.reactor = reactor

    def __enter__(self):
        original = self.original = self.reactor.callLater

        def call_later(delay, function, *args, **kwargs):
            if getattr(function, "__name__", "") == "application_checker":
                return None
            return original(delay, function, *args, **kwargs)

        self.reactor.callLater = call_later

    def __exit__(self, *exc):
        self.reactor.callLater = self.original


def read_slowly(scope) -> None:
    """Read this client's socket in small pieces from now on (see
    THROTTLED_READ_BYTES). A no-op under servers that do not expose their
    transport."""
    transport = scope.get(READ_PAUSE_SCOPE_KEY)
    if transport is not None and hasattr(transport, "bufferSize"):
        transport.bufferSize = THROTTLED_READ_BYTES


def resume_reading(scope) -> None:
    """Read the client's socket again after ``pause_reading(scope, None)``."""
    transport = scope.get(READ_PAUSE_SCOPE_KEY)
    if transport is not None:
        transport.resumeProducing()


def pause_reading(scope, seconds: float | None) -> None:
    """Stop reading the client's socket for ``seconds`` (None: until
    ``resume_reading``).

    The kernel's buffers then fill and the client's sends block, instead of
    Daphne parsing every frame of a flood that will be refused anyway. A
    no-op under servers that do not expose their transport.
    """
    transport = scope.get(READ_PAUSE_SCOPE_KEY)
    if transport is None:
        return
    transport.pauseProducing()
    if seconds is not None:
        reactor = sys.modules["twisted.internet.reactor"]
        reactor.callLater(seconds, transport.resumeProducing)
