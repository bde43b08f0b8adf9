"""Daphne's Server housekeeping, made to cost what changed, not what is open.

Upstream: daphne 4.2.3 (``daphne/server.py``, ``daphne/ws_protocol.py``),
whose reactor is Twisted 26.10.0's.
Touches: ``Server.protocol_disconnected`` and ``Server.create_application``
(wrapped), ``Server.application_checker`` (Daphne's own, run over a view of
``Server.connections``, its self-rescheduling ``daphne.server.reactor.
callLater`` swallowed), ``Server.timeout_checker`` (replaced: Daphne 4.2.3's
loop body over one slice at a time), ``WebSocketProtocol.__hash__`` and
``__eq__``.

Every second Daphne's application_checker walks every connection to reap
finished applications, and every 2 s timeout_checker walks them all at
once: both stall the event loop in proportion to the connections open. Here
the first visits only connections that disconnected or whose application
finished (and so can run every APPLICATION_CHECK_SECONDS), and the second
is spread over the 2 s.
"""

from __future__ import annotations

import sys

from signaling.speedups import daphne_footprint

UPSTREAM = {"daphne": "4.2.3", "twisted": "26.10.0"}
TOUCHES = (
    "daphne.server.Server.protocol_disconnected",
    "daphne.server.Server.create_application",
    "daphne.server.Server.application_checker",
    "daphne.server.Server.timeout_checker",
    "daphne.server.Server.connections",
    "daphne.server.reactor.callLater",
    "daphne.ws_protocol.WebSocketProtocol.__hash__",
    "daphne.ws_protocol.WebSocketProtocol.__eq__",
)

# Daphne's timeout check visits every connection every 2 s in one go (and
# sends the pings that are due); split into this many slices, each
# connection is still visited every 2 s, and each slice stays short enough
# to keep out of the relay's tail latency.
TIMEOUT_CHECK_SLICES = 40

# How often closed connections are handed back (Daphne: every second). Until
# Daphne's application_checker reaps a connection that closed and whose
# application finished, its connection table keeps the protocol and the
# consumer alive, so under churn the interval sets the memory high-water
# mark (tests/end_to_end/test_leaks.py). Checking only the connections that
# changed makes the shorter interval cheap.
APPLICATION_CHECK_SECONDS = 0.1


def apply() -> None:
    server_module = sys.modules.get("daphne.server")
    if server_module is None or getattr(server_module.Server, "_signaling_patched", False):
        return
    _patch_housekeeping(server_module.Server, server_module.reactor)
    _hash_connections_natively()


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


def _patch_housekeeping(server_class, reactor) -> None:
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
        queue = original_create(self, protocol, scope)
        details = self.connections.get(protocol)
        instance = details and details.get("application_instance")
        if instance is not None:
            instance.add_done_callback(lambda _future: due(self).add(protocol))
        return queue

    def application_checker(self):
        # Daphne's own checker, run over only the connections that need it:
        # it is handed a view of self.connections holding just those.
        # Rescheduled whatever happens: one exception must not stop
        # connections being reaped for the rest of the process's life.
        try:
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
            # Still open (a disconnected app that has not finished yet):
            # check again next time; gone: forget.
            candidates.intersection_update(everything)
        finally:
            reactor.callLater(APPLICATION_CHECK_SECONDS, self.application_checker)

    def timeout_checker(self):
        # Daphne 4.2.3's timeout_checker body over one slice; rescheduled
        # whatever happens, as above.
        try:
            protocols = list(self.connections)
            index = self._signaling_timeout_slice = (
                getattr(self, "_signaling_timeout_slice", -1) + 1
            ) % TIMEOUT_CHECK_SLICES
            for protocol in protocols[index::TIMEOUT_CHECK_SLICES]:
                protocol.check_timeouts()
        finally:
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
        daphne_footprint.forget(key)


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
