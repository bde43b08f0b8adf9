"""What an idle WebSocket connection keeps in memory under Daphne.

Upstream: daphne 4.2.3 (``daphne/server.py``: ``Server.create_application``,
copied with a Mailbox for its asyncio.Queue; ``daphne/http_protocol.py``;
``daphne/ws_protocol.py``), autobahn 26.11.1 (the protocol's attributes and
``CONFIG_ATTRS``), Twisted 26.10.0 (``twisted.web.http``'s channel and
producer).
Touches: ``Server.create_application`` (replaced), ``WebRequest.process``
and ``WebSocketProtocol.onOpen`` (wrapped), the factory's ``protocol``
(Daphne's ``ws_factory``, set to a subclass owned here), Autobahn's
``CONFIG_ATTRS`` (on that subclass), ``HTTPChannel.requests``.

A signaling server mostly holds idle connections, so their size is its
capacity. Daphne and Autobahn keep the whole opening handshake for the life
of the socket, an asyncio.Queue (three deques) for a handful of ASGI
events, and Autobahn's ~110 per-connection attributes, most of them copies
of the factory's settings. Here, once a connection is open:

- the input queue is a Mailbox (the application is its only reader);
- the HTTP request that was upgraded is let go (Twisted kept it as the
  socket's producer);
- Autobahn's handshake texts are dropped, and attributes whose value is the
  same for every connection are read from a class instead of a
  per-instance dictionary entry: a subclass of Daphne's protocol made here
  (``Trimmer.shared_class``), never Daphne's own class;
- and once Daphne lets go of a closed connection, its protocol object is
  emptied (``forget``), so reference counting frees what the connection
  held instead of the cyclic garbage collector.

Nothing the application, Daphne or Autobahn reads later is removed: values
move, they do not change.
"""

from __future__ import annotations

import asyncio
import operator
import sys
from collections.abc import Callable
from functools import partial

from signaling.ws.mailbox import Mailbox

_PATCHED = "_signaling_footprint"

UPSTREAM = {"daphne": "4.2.3", "autobahn": "26.11.1", "twisted": "26.10.0"}
TOUCHES = (
    "daphne.server.Server.create_application",
    "daphne.http_protocol.WebRequest.process",
    "daphne.ws_protocol.WebSocketProtocol.onOpen",
    "daphne.ws_protocol.WebSocketFactory.protocol",
    "autobahn.websocket.protocol.WebSocketProtocol.CONFIG_ATTRS",
    "autobahn.websocket.protocol.WebSocketProtocol.send_queue",
    "twisted.web.http.HTTPChannel.requests",
)

# ASGI's scope["asgi"], the same for every connection: shared, not copied.
_ASGI_VERSION = {"version": "3.0"}

# Autobahn/Daphne attributes only used while the opening handshake runs.
_HANDSHAKE_ONLY = frozenset({
    "http_request_data",
    "http_headers",
    "http_response_data",
    "http_request_params",
    "http_status_line",
    "http_request_host",
    "http_request_uri",
    "http_request_path",
    "websocket_extensions",
    "websocket_protocols",
    "_wskey",
    "clean_headers",
    "application_deferred",
})

# Values that may live on the class when every connection has the same.
_SHAREABLE_TYPES = (bool, int, float, str, bytes, type(None))


def apply() -> None:
    server = sys.modules.get("daphne.server")
    ws_protocol = sys.modules.get("daphne.ws_protocol")
    http_protocol = sys.modules.get("daphne.http_protocol")
    if server is None or ws_protocol is None or http_protocol is None:
        return
    if getattr(server.Server, _PATCHED, False):
        return
    _use_slim_input_queues(server.Server)
    _let_go_of_upgraded_requests(http_protocol.WebRequest, ws_protocol.WebSocketProtocol)
    _trim_open_connections(ws_protocol.WebSocketProtocol)
    setattr(server.Server, _PATCHED, True)


def _use_slim_input_queues(server_class) -> None:
    def create_application(self, protocol, scope):
        # Daphne's create_application with a Mailbox for an asyncio.Queue.
        assert "application_instance" not in self.connections[protocol]
        input_queue = Mailbox()
        scope.setdefault("asgi", _ASGI_VERSION)
        application_instance = self.application(
            scope=scope,
            receive=input_queue.get,
            send=partial(self.handle_reply, protocol),
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            application_instance
        )
        return input_queue

    server_class.create_application = create_application


def _let_go_of_upgraded_requests(request_class, protocol_class) -> None:
    process = request_class.process

    def process_then_release(self):
        channel = self.channel
        transport = getattr(channel, "transport", None)
        result = process(self)
        if self.transport is None and isinstance(
            getattr(transport, "protocol", None), protocol_class
        ):
            # Upgraded to WebSocket: the socket now belongs to Autobahn. The
            # HTTP channel stays registered as the socket's producer (and
            # with it this request and its headers) unless told otherwise.
            producer = getattr(transport, "producer", None)
            if getattr(producer, "_channel", producer) is channel:
                transport.unregisterProducer()
            channel.setTimeout(None)
            # The request would otherwise stay in a reference cycle with
            # its channel until the garbage collector finds it.
            channel.requests = []
        return result

    request_class.process = process_then_release


class _HandshakeRequest:
    """What Daphne still reads of the opening request once open (its path,
    for the disconnect log line)."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class _SendQueue(list):
    """Autobahn's send queue (a deque of 600+ bytes, nearly always empty)
    as a list: append, popleft and len are all Autobahn uses."""

    __slots__ = ()

    def popleft(self):
        return self.pop(0)


def _trim_open_connections(protocol_class) -> None:
    on_open = protocol_class.onOpen
    trimmer = Trimmer(protocol_class)

    def on_open_then_trim(self):
        result = on_open(self)
        trimmer.trim(self)
        return result

    protocol_class.onOpen = on_open_then_trim
    global _trimmed_classes
    _trimmed_classes = (protocol_class,)


class Trimmer:
    """Moves the attributes that a class's open connections all have alike
    to a subclass made for the purpose (``shared_class``, which the trimmed
    connections become and the factory builds from then on), and drops the
    handshake's. The class given is never written to.

    Looking at each of Autobahn's ~110 attributes in Python is costly for
    every connection. Connections opened the same
    way have the same attribute names in the same order, so the first one
    of each such layout is looked at one by one and leaves a plan; the
    others are checked against it with a few C-level operations (are the
    shared values still the class's, of the same type?) and fall back to
    the one-by-one way when not.
    """

    # Layouts remembered; more would mean connections opened many ways.
    MAX_PLANS = 16

    def __init__(self, protocol_class: type) -> None:
        self.protocol_class = protocol_class
        # Shared values live here, not on Daphne's (or Autobahn's) class.
        self.shared_class = type(
            protocol_class.__name__,
            (protocol_class,),
            {"__module__": protocol_class.__module__, "__qualname__": protocol_class.__qualname__},
        )
        # What reading each name from the class gives (looked up once).
        self.class_values: dict[str, object] = {}
        self.plans: dict[tuple[str, ...], _TrimPlan] = {}

    def trim(self, protocol) -> None:
        attributes = protocol.__dict__
        request = attributes.get("request")
        if request is not None and not isinstance(request, _HandshakeRequest):
            attributes["request"] = _HandshakeRequest(request.path)
        if not attributes.get("send_queue"):
            attributes["send_queue"] = _SendQueue()
        layout = tuple(attributes)
        plan = self.plans.get(layout)
        kept = plan.apply(attributes) if plan is not None else None
        if kept is None:
            kept = self.trim_one_by_one(attributes)
            if plan is None and len(self.plans) < self.MAX_PLANS:
                self.plans[layout] = _TrimPlan(attributes, kept, self.class_values)
        # A new dict: deleting keys would not shrink the old one.
        protocol.__dict__ = kept
        shared_class = self.shared_class
        if protocol.__class__ is not shared_class:
            protocol.__class__ = shared_class
        if shared_class.__dict__.get("CONFIG_ATTRS") is None:
            _copy_only_unshared_settings(shared_class, kept)
            # New connections are built as the shared class (Daphne itself
            # sets its factory's protocol this way).
            factory = kept.get("factory")
            if getattr(factory, "protocol", None) is self.protocol_class:
                factory.protocol = shared_class

    def trim_one_by_one(self, attributes: dict) -> dict:
        shared_class = self.shared_class
        class_values = self.class_values
        kept = {}
        for name, value in attributes.items():
            if name in _HANDSHAKE_ONLY:
                continue
            if type(value) in _SHAREABLE_TYPES:
                current = class_values.get(name, _MISSING)
                if current is _MISSING:
                    current = getattr(shared_class, name, _MISSING)
                    if current is _MISSING:
                        # The first connection's value becomes the shared
                        # class's default; later connections drop theirs
                        # when equal.
                        setattr(shared_class, name, value)
                        current = value
                    class_values[name] = current
                if type(current) is type(value) and current == value:
                    continue
            kept[name] = value
        return kept


_MISSING = object()


class _TrimPlan:
    """How one layout of attributes was trimmed: which names were dropped
    for holding the class's value, and which were kept."""

    __slots__ = ("shared", "expected", "expected_types", "kept_names", "kept_values")

    def __init__(self, attributes: dict, kept: dict, class_values: dict) -> None:
        shared = [
            name for name in attributes if name not in kept and name not in _HANDSHAKE_ONLY
        ]
        self.shared = _getter(shared)
        self.expected = tuple(class_values[name] for name in shared)
        self.expected_types = tuple(map(type, self.expected))
        self.kept_names = tuple(kept)
        self.kept_values = _getter(self.kept_names)

    def apply(self, attributes: dict) -> dict | None:
        """The trimmed attributes, or None if a shared value differs."""
        values = self.shared(attributes)
        if values != self.expected or tuple(map(type, values)) != self.expected_types:
            return None
        return dict(zip(self.kept_names, self.kept_values(attributes)))


def _getter(names) -> Callable[[dict], tuple]:
    """itemgetter that always returns a tuple (it returns a lone value for
    one name and refuses none)."""
    names = tuple(names)
    if len(names) > 1:
        return operator.itemgetter(*names)
    if len(names) == 1:
        (name,) = names
        return lambda attributes: (attributes[name],)
    return lambda attributes: ()


def _copy_only_unshared_settings(protocol_class, kept: dict) -> None:
    # Autobahn copies each of its ~30 settings from the factory into every
    # new connection (unless already readable there) and lists them all for
    # a debug line: ~100 calls per connection. After the first connection's
    # trim, a setting it did not keep reads the factory's value from the
    # class, so only the ones it kept still need copying. Daphne's factory
    # settings do not change once it serves.
    protocol_class.CONFIG_ATTRS = [name for name in protocol_class.CONFIG_ATTRS if name in kept]


def forget(protocol) -> None:
    """Called once Daphne has let go of a connection (socket closed and
    application finished). Its protocol object sits in reference cycles
    (Deferreds, bound methods, the transport) with everything the
    connection held, which only the cyclic garbage collector would free:
    with thousands of short connections that made its collections
    pause the server for hundreds of milliseconds. Emptying it lets
    reference counting free them at once."""
    if isinstance(protocol, _trimmed_classes):
        protocol.__dict__.clear()
        # Autobahn leaves some timers running after the socket closed (its
        # closing-handshake timeout among them); when one fires it must see
        # a closed connection, not the class-level default state of an open
        # one (which made it drop another connection's socket).
        protocol.state = protocol.STATE_CLOSED


_trimmed_classes: tuple[type, ...] = ()
