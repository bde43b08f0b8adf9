"""A replacement for part of Channels: the consumer's reading and writing.

Subclasses Channels' AsyncJsonWebsocketConsumer and replaces its
``AsyncConsumer.__call__`` (the read loop), adjusted where it fails a server
that must not crash or stall: a channel layer that goes away, a client that
vanishes mid-send, and per-message overheads. It patches nothing and does
not depend on the speedups switch. Written against channels 4.3.2
(``channels/consumer.py``, ``channels/generic/websocket.py``; ``UPSTREAM``,
checked by tests/speedups/test_versions.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

from channels.consumer import get_handler_name
from channels.exceptions import ChannelFull, StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

from signaling.observability import metrics
from signaling.ws import backpressure
from signaling.ws.backpressure import pause_reading, resume_reading
from signaling.ws.mailbox import Mailbox

logger = logging.getLogger(__name__)

UPSTREAM = {"channels": "4.3.2"}

# Failures of the channel layer's transport (Redis unreachable, timeouts, a
# full channel).
LAYER_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, ChannelFull)
try:
    from redis.exceptions import RedisError

    LAYER_ERRORS += (RedisError,)
except ImportError:  # pragma: no cover - redis comes with channels-redis
    pass

# A send to a client that has gone: the ASGI spec (2.4) has servers raise
# OSError (uvicorn does); Daphne lets Autobahn's Disconnected through.
CONNECTION_GONE: tuple[type[BaseException], ...] = (OSError,)
try:
    from autobahn.exception import Disconnected

    CONNECTION_GONE += (Disconnected,)
except ImportError:  # pragma: no cover - another ASGI server than Daphne
    pass

# A connection with frames queued steps aside for the others after
# handling this many back to back.
FRAMES_BEFORE_YIELDING = 8

# Back-off while the channel layer is unreachable: quick to notice its
# return, without spinning while it is gone.
LAYER_RETRY_FIRST_SECONDS = 0.1
LAYER_RETRY_MAX_SECONDS = 2.0



# Channels' get_handler_name, remembered per message type (a dozen types:
# websocket.*, the layer events).
_handler_names: dict[str, str] = {}
_HANDLER_NAMES_KEPT = 64


class ResilientJsonWebsocketConsumer(AsyncJsonWebsocketConsumer):
    """AsyncJsonWebsocketConsumer that survives broker outages and departed
    clients, and spends nothing per message that it does not need."""

    # Set when the socket is closing or gone: later frames are ignored.
    closing = False
    # A subclass may handle some messages before they wake it:
    # ``absorb_message(message) -> bool`` is offered each message the
    # consumer would handle next, at once (it waits for input and nothing is
    # queued), and returns True when it handled it. Only a Mailbox inbox (the
    # speedups' Daphne) offers them; otherwise every message is dispatched.
    absorb_message = None

    async def __call__(self, scope, receive, send):
        # As AsyncConsumer.__call__, with two differences. The channel layer
        # is read through _receive_from_layer, which survives a broker
        # outage (the stock reader lets a Redis error end the connection
        # with 1011). And each source is read by one long-lived loop: the
        # stock await_many_dispatch makes a task and an asyncio.wait per
        # message.
        self.scope = scope
        backpressure.attach(scope, send)
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_layer_delivers_once = getattr(
            self.channel_layer, "delivers_once", False
        )
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        inbox = getattr(receive, "__self__", None)
        attach = getattr(self.channel_layer, "attach", None)
        layer_pump = None
        if attach is not None and isinstance(inbox, Mailbox):
            # The in-memory layer delivers into the same inbox as the
            # socket: one reader, nothing to lock.
            attach(self.channel_name, inbox, self._handle_attached_layer_event)
        else:
            # Handlers from both sources run one at a time, in arrival order.
            self.dispatch_lock = asyncio.Lock()
            layer_pump = asyncio.ensure_future(self._pump_layer())
        if self.absorb_message is not None and isinstance(inbox, Mailbox):
            inbox.absorb = self.absorb_message
        queued = getattr(inbox, "qsize", None)
        streak = 0
        held = False
        try:
            while True:
                message = await receive()
                if type(message) is tuple:
                    # (expires, event) from the attached channel layer.
                    await self._dispatch_layer_event(*message)
                elif layer_pump is None:
                    await self.dispatch(message)
                else:
                    async with self.dispatch_lock:
                        await self.dispatch(message)
                if queued is None:
                    continue
                # receive() does not suspend while frames are queued: a
                # client's burst would hold the event loop until its queue
                # is empty. After a few frames, stop reading its socket (or
                # the server would only read ahead) and let the others run;
                # read again once its queue is empty.
                if queued():
                    streak += 1
                    if streak >= FRAMES_BEFORE_YIELDING:
                        streak = 0
                        if not held and not self.closing:
                            held = True
                            pause_reading(self.scope, None)
                        await asyncio.sleep(0)
                else:
                    streak = 0
                    if held:
                        held = False
                        if not self.closing:
                            resume_reading(self.scope)
        except StopConsumer:
            pass
        finally:
            if isinstance(inbox, Mailbox):
                inbox.absorb = None
            if layer_pump is None:
                self.channel_layer.detach(self.channel_name)
            else:
                layer_pump.cancel()

    async def _dispatch_layer_event(self, expires: float, message: dict) -> None:
        if expires < time.time():
            # As the layer's receive() does with an expired message.
            self.channel_layer.expired(self.channel_name)
        else:
            await self._handle_attached_layer_event(message)

    async def _handle_attached_layer_event(self, message: dict) -> None:
        # From this consumer's inbox, or from the layer in the sender's task
        # while this consumer waits for input.
        if not await self._handle_layer_event(message):
            # As the layer pump: no more layer events, the socket's events
            # still run until it closes.
            self.channel_layer.detach(self.channel_name)

    async def _pump_layer(self):
        while True:
            message = await self._receive_from_layer()
            async with self.dispatch_lock:
                if not await self._handle_layer_event(message):
                    return

    async def _handle_layer_event(self, message: dict) -> bool:
        """Run a layer event's handler; False when it stopped the consumer.
        A failing handler is logged, not allowed to end the connection."""
        try:
            await self.dispatch(message)
        except StopConsumer:
            return False
        except Exception:
            logger.exception("channel-layer event failed: %s", message.get("type"))
        return True

    async def _receive_from_layer(self):
        delay = LAYER_RETRY_FIRST_SECONDS
        while True:
            try:
                return await self.channel_layer.receive(self.channel_name)
            except LAYER_ERRORS:
                metrics.layer_failed("receive")
                logger.warning(
                    "channel layer receive failed; retrying in %.1fs", delay, exc_info=True
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, LAYER_RETRY_MAX_SECONDS)

    async def send(self, text_data=None, bytes_data=None, close=False):
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except CONNECTION_GONE:
            # The client went away between our decision to send and the
            # write; its disconnect is on its way.
            self.closing = True

    async def dispatch(self, message):
        # Channels >= 4.2 hops to the database thread before every handler to
        # close stale connections. This consumer reaches the database only
        # through database_sync_to_async, which does that itself, so the hop
        # would only add a thread round trip to every relayed frame.
        kind = message.get("type")
        name = _handler_names.get(kind) if type(kind) is str else None
        if name is None:
            name = get_handler_name(message)  # validates the type; raises if bad
            if len(_handler_names) < _HANDLER_NAMES_KEPT:
                _handler_names[kind] = name
        handler = getattr(self, name, None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message):
        # As the stock handler, without its hop to the database thread to
        # close old connections: this consumer never holds one.
        await self.disconnect(message.get("code"))
        raise StopConsumer()
