"""The WebSocket consumer for PeerJS clients: frames from ``core/peerjs.py``,
presence, relaying and limits shared with the app protocol's consumer
(``ws/sessions.py``, ``ws/guards.py``).

A PeerJS id ``x`` is claimed in presence as ``peerjs:x`` (app usernames
cannot begin so), with the handshake's token as its guest password, so the
same id with the same token replaces the old socket (PeerJS's reconnect)
and any other token is refused with ID-TAKEN, on every instance alike. An id
that is the username of a Django account needs that account's password as
its token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import parse_qsl

from django.conf import settings

from signaling.core import peerjs
from signaling.core.peerjs import PeerJSRefusal
from signaling.core.protocol import ErrorCode, ProtocolError
from signaling.observability import metrics
from signaling.presence.accounts import credential_for
from signaling.presence.live_sessions import (
    ensure_heartbeat,
    live_session_end,
    live_session_start,
)
from signaling.presence.offline_queue import offline_queue
from signaling.presence.registry import Claimed, LocalSession, registry
from signaling.ws import guards, shutdown
from signaling.ws.backpressure import pause_reading, read_slowly
from signaling.ws.channels_consumer import LAYER_ERRORS, ResilientJsonWebsocketConsumer
from signaling.ws.connection_info import client_address, user_agent
from signaling.ws.consumers import SHUTDOWN_FLUSH_SECONDS, on_reclaim
from signaling.ws.sessions import (
    first_delivery,
    relay_failure,
    session_claim,
    session_release,
)

logger = logging.getLogger(__name__)

# The handshake's query string is a few short parameters.
MAX_QUERY_BYTES = 2048

ACCOUNT_TOKEN_MESSAGE = "ID belongs to an account; the token must be its password"
BROKER_MESSAGE = "The server cannot reach its message broker; try again shortly"

# Timer tasks (expiries, alive checks) in flight: the event loop keeps only
# weak references to tasks, and one collected mid-run would never finish.
_timer_tasks: set[asyncio.Task] = set()


def _call_later(delay: float, make_coroutine) -> asyncio.TimerHandle:
    loop = asyncio.get_running_loop()

    def start():
        task = loop.create_task(make_coroutine())
        _timer_tasks.add(task)
        task.add_done_callback(_timer_tasks.discard)

    return loop.call_later(delay, start)


class PeerJSConsumer(ResilientJsonWebsocketConsumer):
    """One PeerJS client connection."""

    async def connect(self):
        """Called when the handshake arrives (the Origin was already checked)."""
        self.peer_id: str | None = None
        self.session: LocalSession | None = None
        self.ended = False
        self.closing = False
        self.counted = False
        self.relays_sent = 0
        self.recent_relays: dict | None = None
        # Ids this connection queued frames for, whose expiry is pending.
        self.expiring: set[str] = set()
        self.alive_timer: asyncio.TimerHandle | None = None
        self.last_frame_at = 0.0
        self.client_address = client_address(self.scope)
        self.user_agent = user_agent(self.scope)
        raw_query = self.scope.get("query_string", b"")[:MAX_QUERY_BYTES]
        query = dict(parse_qsl(raw_query.decode("utf-8", "replace")))
        self.scope["headers"] = ()
        refusal = guards.connection_refusal(self.client_address)
        # Accept even to refuse: the client reads the reason from a frame.
        await self.accept()
        if shutdown.draining():
            # This instance is stopping: the client's reconnect belongs on
            # another (it sees a lost connection, as from peerjs-server).
            await self.close_quietly()
            return
        if refusal is not None:
            await self.refuse(peerjs.error_frame(refusal.message), refusal.code.value)
            return
        try:
            handshake = peerjs.check_handshake(query, key=settings.SIGNALING_PEERJS_KEY)
        except PeerJSRefusal as error:
            await self.refuse(error.frame, error.reason)
            return
        guards.connections.opened(self.client_address)
        self.counted = True
        self.frames = guards.frame_bucket()
        self.refusals = guards.refusal_bucket()
        ensure_heartbeat()
        registry.start(on_reclaim)
        shutdown.remember(self)
        try:
            await self.open_session(handshake)
        except LAYER_ERRORS:
            metrics.layer_failed("request")
            logger.warning("peerjs open failed: broker unavailable", exc_info=True)
            await self.refuse(peerjs.error_frame(BROKER_MESSAGE), "broker")

    async def open_session(self, handshake: peerjs.Handshake) -> None:
        name = peerjs.claim_name(handshake.id)
        try:
            guards.check_sign_in_attempts(name, self.client_address)
            credential = await credential_for(
                username=handshake.id, password=handshake.token
            )
        except ProtocolError as error:
            if error.code is ErrorCode.WRONG_CREDENTIALS:
                guards.sign_in_failed(name, self.client_address)
                await self.refuse(
                    peerjs.id_taken_frame(ACCOUNT_TOKEN_MESSAGE), error.code.value
                )
            else:
                await self.refuse(peerjs.error_frame(error.message), error.code.value)
            return
        session = LocalSession(
            username=name,
            channel_name=self.channel_name,
            credential=credential,
            client_address=self.client_address,
            user_agent=self.user_agent,
        )
        outcome = await session_claim(self.channel_layer, session)
        if not isinstance(outcome, Claimed):
            # Held under another token. Not counted as a failed sign-in, as
            # an account's wrong password is: a guest id's token is a random
            # string the client makes, not a password to guess, and counting
            # collisions let anyone lock a peer out of its own id (the next
            # attempts, its reconnects included, refused with a fatal ERROR)
            # by trying it five times. peerjs-server answers ID-TAKEN every
            # time; so does this.
            await self.refuse(peerjs.id_taken_frame(), "id_taken")
            return
        self.peer_id = handshake.id
        self.session = session
        guards.sign_in_succeeded(name, self.client_address)
        # OPEN after a same-token reconnect too (peerjs-server sends none):
        # the client sets peer.open only on it.
        await self.send(text_data=peerjs.open_frame())
        metrics.sign_in_succeeded(
            replaced=outcome.replaced_channel is not None, protocol="peerjs"
        )
        logger.info(
            "peerjs open id=%s address=%s guest=%s replaced=%s",
            handshake.id,
            self.client_address,
            credential.is_guest,
            outcome.replaced_channel is not None,
        )
        live_session_start(session)
        loop = asyncio.get_running_loop()
        self.last_frame_at = loop.time()
        self.arm_alive_timer(settings.SIGNALING_PEERJS_ALIVE_TIMEOUT_SECONDS)
        await self.deliver_queued()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Called with every client frame; see core/peerjs.py for answers."""
        if self.closing or self.peer_id is None:
            return
        now = asyncio.get_running_loop().time()
        self.last_frame_at = now
        if not self.frames.allow(now):
            read_slowly(self.scope)
            pause_reading(self.scope, 1 / self.frames.rate)
            if not self.refusals.allow(now):
                await self.refuse(peerjs.error_frame("Too many messages"), "rate")
            # Otherwise dropped: an ERROR would destroy the client's Peer.
            metrics.error_sent(ErrorCode.RATE_LIMITED)
            return
        message = peerjs.decode_frame(text_data, bytes_data)
        if isinstance(message, peerjs.Heartbeat):
            return
        if isinstance(message, peerjs.Dropped):
            metrics.peerjs_ignored(message.reason.value)
            logger.debug("peerjs ignored id=%s reason=%s", self.peer_id, message.reason)
            return
        if isinstance(message, peerjs.Undeliverable):
            metrics.peerjs_ignored(message.reason)
            await self.send_expire(message.dst)
            return
        try:
            await self.relay(message)
        except LAYER_ERRORS:
            metrics.layer_failed("request")
            logger.warning("peerjs relay failed id=%s", self.peer_id, exc_info=True)
            await self.send_expire(message.dst)

    def absorb_message(self, message) -> bool:
        """Called with a message before it wakes this consumer: a HEARTBEAT
        (every 5 s from every idle client) is handled here, as receive()
        would handle it now, without a loop turn and a dispatch."""
        if (
            type(message) is not dict
            or message.get("text") != peerjs.HEARTBEAT_TEXT
            or self.closing
            or self.peer_id is None
        ):
            return False
        now = asyncio.get_running_loop().time()
        if not self.frames.allow(now):
            # A flood: receive() answers it. The refused look left the
            # bucket as receive() will find it (no token taken).
            return False
        self.last_frame_at = now
        return True

    async def relay(self, message: peerjs.Relay) -> None:
        started = time.perf_counter()
        frame = peerjs.relay_frame(message, src=self.peer_id)
        name = peerjs.claim_name(message.dst)
        target_channel = await registry.lookup(name)
        if target_channel is None:
            if message.type in peerjs.QUEUED_TYPES:
                await self.queue(message.dst, frame, name)
            # LEAVE and EXPIRE for an absent id go nowhere (peerjs-server).
            return
        event = {
            "type": "peerjs.relay",
            "frame": frame,
            "sender_channel": self.channel_name,
            "target": message.dst,
            "seq": self.relays_sent,
        }
        self.relays_sent += 1
        try:
            # To the target's own channel (see sessions.relay_failure).
            await self.channel_layer.send(target_channel, event)
        except LAYER_ERRORS as error:
            relay_failure(error, username=self.peer_id)  # counted and logged
            await self.send_expire(message.dst)
            return
        metrics.peerjs_relayed(message.type, started=started)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "peerjs relay type=%s from=%s to=%s payload=%r",
                message.type.value,
                self.peer_id,
                message.dst,
                message.payload,
            )

    async def queue(self, dst: str, frame: str, name: str) -> None:
        """Keep a frame for an id that is not connected."""
        if not await offline_queue.put(dst=dst, sender=self.peer_id, frame=frame):
            metrics.peerjs_ignored("queue_full")
            await self.send_expire(dst)
            return
        metrics.peerjs_queued()
        if dst not in self.expiring:
            self.expiring.add(dst)
            _call_later(
                settings.SIGNALING_PEERJS_EXPIRE_SECONDS,
                lambda: self.expire_queued(dst),
            )
        # The addressee may have connected (and taken its queue) between
        # the look-up and the put: have it look again.
        channel = await registry.lookup(name)
        if channel is not None:
            await self.channel_layer.send(channel, {"type": "peerjs.drain"})

    async def expire_queued(self, dst: str) -> None:
        """Called when frames this connection queued for ``dst`` expire."""
        self.expiring.discard(dst)
        try:
            removed = await offline_queue.expire(dst=dst, sender=self.peer_id)
            if not removed:
                return
            metrics.peerjs_expired()
            if not self.ended:
                await self.send_expire(dst)
                return
            # This socket was replaced by a reconnect: tell the new one.
            channel = await registry.lookup(peerjs.claim_name(self.peer_id))
            if channel is not None:
                frame = peerjs.expire_frame(src=dst, dst=self.peer_id)
                await self.channel_layer.send(
                    channel, {"type": "peerjs.frame", "frame": frame}
                )
        except LAYER_ERRORS:
            metrics.layer_failed("expire")
            logger.warning("peerjs expiry failed id=%s", self.peer_id, exc_info=True)

    async def deliver_queued(self) -> None:
        for frame in await offline_queue.take(self.peer_id):
            await self.send(text_data=frame)

    async def send_expire(self, dst: str) -> None:
        await self.send(text_data=peerjs.expire_frame(src=dst, dst=self.peer_id))

    def arm_alive_timer(self, delay: float) -> None:
        self.alive_timer = _call_later(delay, self.check_alive)

    async def check_alive(self) -> None:
        """Called when the client may have been silent for too long."""
        self.alive_timer = None
        if self.ended or self.closing:
            return
        timeout = settings.SIGNALING_PEERJS_ALIVE_TIMEOUT_SECONDS
        silent = asyncio.get_running_loop().time() - self.last_frame_at
        if silent < timeout:
            self.arm_alive_timer(timeout - silent)
            return
        logger.info("peerjs alive timeout id=%s", self.peer_id)
        await self.end("timeout")
        await self.close_quietly()

    async def refuse(self, frame: str, reason: str) -> None:
        """Answer a refused handshake (or a flood) and close."""
        logger.info("peerjs refused address=%s reason=%s", self.client_address, reason)
        if self.peer_id is None:
            metrics.peerjs_handshake_refused(reason)
        await self.send(text_data=frame)
        await self.close_quietly()

    async def close_quietly(self) -> None:
        self.closing = True
        await self.close()

    # Channel-layer events.

    async def peerjs_relay(self, event):
        """Called when another peer relays a frame to this one."""
        if self.ended:
            return
        if not (self.channel_layer_delivers_once or first_delivery(self, event)):
            return
        await self.send(text_data=event["frame"])

    async def peerjs_frame(self, event):
        """Called with a frame for this client from another connection."""
        if not self.ended:
            await self.send(text_data=event["frame"])

    async def peerjs_drain(self, event):
        """Called when frames were queued for this id after it connected."""
        if not self.ended:
            await self.deliver_queued()

    async def relay_bounced(self, event):
        """Called when a relay reached an instance that had died."""
        if not self.ended and event.get("target"):
            await self.send_expire(event["target"])

    async def peers_lost(self, event):
        """Called when an instance died; PeerJS peers are not told (as
        peerjs-server tells nobody when a client goes)."""

    async def session_replaced(self, event):
        """Called when the same id with the same token connected again."""
        if self.ended:
            return
        await self.end("replaced")
        await self.close_quietly()

    async def session_lost(self) -> None:
        """Called when Redis lost this id and it could not be claimed again."""
        if self.ended:
            return
        await self.end("disconnected")
        await self.close_quietly()

    async def session_disconnect(self, event):
        """Called when an administrator disconnects this session."""
        if self.ended:
            return
        await self.end("disconnected")
        metrics.error_sent(ErrorCode.DISCONNECTED_BY_ADMIN)
        await self.send(text_data=peerjs.error_frame(event["reason"]))
        await self.close_quietly()

    async def disconnect(self, code):
        """Called when the socket closed, however it closed."""
        shutdown.forget(self)
        if self.alive_timer is not None:
            self.alive_timer.cancel()
            self.alive_timer = None
        if self.counted:
            self.counted = False
            guards.connections.closed(self.client_address)
        await self.end("disconnected")
        if self.peer_id is not None:
            logger.info(
                "peerjs disconnect id=%s address=%s close_code=%s",
                self.peer_id,
                self.client_address,
                code,
            )

    async def end(self, reason: str) -> None:
        """Release the id, once. Nobody is told (as peerjs-server): a peer
        whose socket dropped may still be connected to its peers."""
        if self.ended or self.session is None:
            self.ended = True
            return
        self.ended = True
        try:
            await session_release(
                self.channel_layer,
                username=self.session.username,
                channel_name=self.channel_name,
            )
        except LAYER_ERRORS:
            metrics.layer_failed("release")
            logger.warning("could not release peerjs id=%s", self.peer_id)
        live_session_end(channel_name=self.channel_name)
        level = logging.DEBUG if reason == "disconnected" else logging.INFO
        logger.log(level, "peerjs close id=%s reason=%s", self.peer_id, reason)

    async def server_stopping(self, *, release: bool = True) -> None:
        """Called when this instance stops: release the id and close, so
        the client's reconnect lands on another instance at once."""
        shutdown.forget(self)
        if self.closing:
            return
        if release and self.session is not None and not self.ended:
            await self.end("server_stopping")
        self.ended = True
        try:
            await self.close_quietly()
            # Twisted drops connections without flushing their write buffers
            # once shutdown proceeds; give the close time to leave.
            await asyncio.sleep(SHUTDOWN_FLUSH_SECONDS)
        except Exception:
            logger.warning("could not close a peerjs client on stop", exc_info=True)
