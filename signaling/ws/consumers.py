"""The WebSocket consumer: adapts frames to protocol, presence and the layer."""

from __future__ import annotations

import asyncio
import logging
import time

from channels.layers import get_channel_layer
from django.conf import settings

from signaling.core import protocol
from signaling.core.ice import IceServers
from signaling.core.protocol import (
    ErrorCode,
    GetIceServers,
    ProtocolError,
    Relay,
    SignIn,
)
from signaling.observability import metrics
from signaling.presence.accounts import credential_for
from signaling.presence.live_sessions import (
    ensure_heartbeat,
    live_session_end,
    live_session_start,
)
from signaling.presence.registry import Claimed, LocalSession, ReclaimOutcome, registry
from signaling.ws import guards, shutdown
from signaling.ws.backpressure import pause_reading, read_slowly
from signaling.ws.channels_consumer import LAYER_ERRORS, ResilientJsonWebsocketConsumer
from signaling.ws.connection_info import client_address, user_agent
from signaling.ws.ice_refresh import SessionIceServers
from signaling.ws.sessions import (
    first_delivery,
    relay_failure,
    session_claim,
    session_release,
)

logger = logging.getLogger(__name__)

# How long a stopping server lets its last frames reach clients.
SHUTDOWN_FLUSH_SECONDS = 0.5


class SignalingConsumer(ResilientJsonWebsocketConsumer):
    """One client connection speaking the signaling protocol."""

    async def connect(self):
        """Called when the handshake arrives (the Origin was already checked)."""
        self.username: str | None = None
        self.session: LocalSession | None = None
        # Before anything that may end the connection early: end() stops it.
        self.ice = SessionIceServers(self.send_ice_servers)
        # Users this session exchanged signaling with, and their channels:
        # they are told when this session ends.
        self.peers: dict[str, str] = {}
        self.client_address = client_address(self.scope)
        self.user_agent = user_agent(self.scope)
        # Everything needed from the headers is read: let them go (a
        # kilobyte or two per idle connection for the life of the socket).
        self.scope["headers"] = ()
        self.ended = False
        self.closing = False
        # Error codes this connection was already told (logged once each).
        self.told_codes: frozenset[ErrorCode] = frozenset()
        self.counted = False
        self.sign_in_deadline = None
        # Relays sent (numbered per connection) and, from the first relay
        # received, the recent ones by sender channel and number.
        self.relays_sent = 0
        self.recent_relays: dict[tuple[str, int], None] | None = None
        refusal = guards.connection_refusal(self.client_address)
        # Accept even to refuse: a close before accept reaches the client as
        # a bare HTTP 403, while an Error frame says why.
        await self.accept()
        if shutdown.draining():
            # This instance is stopping: the client belongs on another.
            await self.server_stopping()
            return
        if refusal is not None:
            await self.send_error(refusal.code, refusal.message)
            await self.close_with(protocol.CloseCode.TOO_MANY_CONNECTIONS)
            return
        guards.connections.opened(self.client_address)
        self.counted = True
        self.frames = guards.frame_bucket()
        self.refusals = guards.refusal_bucket()
        loop = asyncio.get_running_loop()
        self.sign_in_deadline = loop.call_later(
            settings.SIGNALING_SIGN_IN_TIMEOUT_SECONDS,
            lambda: loop.create_task(self.sign_in_expired()),
        )
        ensure_heartbeat()
        registry.start(on_reclaim)
        shutdown.remember(self)
        # INFO lines per ordinary session: sign-in and disconnect (logging
        # is several percent of a connection's CPU under Daphne).
        logger.debug("connect address=%s", self.client_address)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Called with every client frame; bad frames become Error frames."""
        if self.closing:
            return
        now = asyncio.get_running_loop().time()
        if not self.frames.allow(now):
            read_slowly(self.scope)
            if self.refusals.allow(now):
                # Read nothing more until the next frame would be allowed.
                pause_reading(self.scope, 1 / self.frames.rate)
                await self.send_error(
                    ErrorCode.RATE_LIMITED, "Too many messages; slow down"
                )
            else:
                # Not paused for good: the client must still be able to
                # finish the close handshake, or it sees 1006, not 4008.
                pause_reading(self.scope, 1 / self.frames.rate)
                await self.close_with(protocol.CloseCode.RATE_LIMITED)
            return
        message = None
        try:
            message = protocol.decode_frame(text_data, bytes_data)
            if isinstance(message, SignIn):
                await self.sign_in(message)
            elif isinstance(message, GetIceServers):
                await self.get_ice_servers()
            else:
                await self.relay(message)
        except ProtocolError as error:
            metrics.request_failed(message, error.code)
            await self.send_error(error.code, error.message)
        except LAYER_ERRORS:
            metrics.layer_failed("request")
            metrics.request_failed(message, ErrorCode.SERVICE_UNAVAILABLE)
            # The channel layer (Redis) is unreachable: say so instead of
            # letting the socket die with a 1011 traceback.
            logger.warning(
                "channel layer unavailable username=%s", self.username, exc_info=True
            )
            await self.send_error(
                ErrorCode.SERVICE_UNAVAILABLE,
                "The server cannot reach its message broker; try again shortly",
            )

    async def sign_in(self, message: SignIn) -> None:
        if shutdown.draining():
            # A name claimed here would move again in moments.
            await self.server_stopping()
            return
        if self.username is not None:
            if message.username == self.username:
                # Idempotent: a client unsure of its state may repeat itself.
                await self.send(text_data=self._signed_in_frame())
                return
            raise ProtocolError(
                ErrorCode.ALREADY_SIGNED_IN,
                f"Already signed in as {self.username}; open a new connection",
            )
        guards.check_sign_in_attempts(
            message.username,
            self.client_address,
            with_password=message.password is not None,
        )
        try:
            credential = await credential_for(
                username=message.username, password=message.password
            )
        except ProtocolError as error:
            if error.code is ErrorCode.WRONG_CREDENTIALS:
                guards.sign_in_failed(message.username, self.client_address)
            raise
        session = LocalSession(
            username=message.username,
            channel_name=self.channel_name,
            credential=credential,
            client_address=self.client_address,
            user_agent=self.user_agent,
        )
        outcome = await session_claim(self.channel_layer, session)
        if not isinstance(outcome, Claimed):
            # A guest name held with another password: a guess that failed.
            guards.sign_in_failed(message.username, self.client_address)
            raise ProtocolError(
                ErrorCode.USERNAME_TAKEN, "Username is taken by another connection"
            )
        self.username = message.username
        self.session = session
        self.cancel_sign_in_deadline()
        guards.sign_in_succeeded(message.username, self.client_address)
        await self.send(text_data=self._signed_in_frame())
        metrics.sign_in_succeeded(replaced=outcome.replaced_channel is not None)
        logger.info(
            "sign-in username=%s address=%s guest=%s replaced=%s",
            self.username,
            self.client_address,
            credential.is_guest,
            outcome.replaced_channel is not None,
        )
        live_session_start(session)

    async def relay(self, message: Relay) -> None:
        started = time.perf_counter()
        if self.username is None:
            raise ProtocolError(ErrorCode.NOT_SIGNED_IN, "Sign in first")
        if (
            message.claimed_username is not None
            and message.claimed_username != self.username
        ):
            raise ProtocolError(
                ErrorCode.USERNAME_MISMATCH,
                f"username must be your signed-in name ({self.username})",
            )
        # PeerJS ids live under a reserved prefix app names cannot take: an
        # app client never reaches a PeerJS peer.
        target_channel = (
            None
            if protocol.reserved_name(message.target)
            else await registry.lookup(message.target)
        )
        if target_channel is None:
            raise ProtocolError(
                ErrorCode.TARGET_NOT_FOUND, protocol.TARGET_NOT_FOUND_MESSAGE
            )
        event = {
            "type": "signal.relay",
            "frame": protocol.relay_frame(message, sender=self.username),
            "sender": self.username,
            "sender_channel": self.channel_name,
            "target": message.target,
            "seq": self.relays_sent,
        }
        self.relays_sent += 1
        try:
            # To the target's own channel (see sessions.relay_failure).
            await self.channel_layer.send(target_channel, event)
        except LAYER_ERRORS as error:
            raise relay_failure(error, username=self.username) from None
        metrics.relayed(message.type, started=started)
        self.peers[message.target] = target_channel
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "relay type=%s from=%s to=%s data=%r",
                message.type.value,
                self.username,
                message.target,
                message.data,
            )

    async def sign_in_expired(self) -> None:
        """Called when the socket has not signed in in time."""
        if self.username is None and not self.closing:
            await self.send_error(
                ErrorCode.SIGN_IN_TIMEOUT, "Sign in within a few seconds of connecting"
            )
            await self.close_with(protocol.CloseCode.SIGN_IN_TIMEOUT)

    async def close_with(self, code: protocol.CloseCode) -> None:
        self.closing = True
        # Autobahn accepts only a plain int as a close code.
        await self.close(code=int(code))

    async def get_ice_servers(self) -> None:
        """Called with GetIceServers: answer with fresh ICE servers."""
        if self.username is None:
            raise ProtocolError(ErrorCode.NOT_SIGNED_IN, "Sign in first")
        await self.send_ice_servers(self.ice.issue(self.username))

    async def send_ice_servers(self, servers: IceServers) -> None:
        """Send an IceServers frame (also called by the refresh timer)."""
        if self.ended:
            return
        frame = protocol.ice_servers_frame(
            self.username, ice_servers=servers.servers, expires_at=servers.expires_at
        )
        await self.send(text_data=frame)

    async def send_error(self, code: ErrorCode, message: str) -> None:
        metrics.error_sent(code)
        # A client repeating a mistake (a flood told rate_limited 50 times,
        # a fuzzer sending the same bad frame) gets one INFO line per kind
        # of error, the repeats at DEBUG: a flood of bad frames must not
        # flood the log, and the line costs more than the answer. The
        # metrics still count every one.
        repeated = code in self.told_codes
        if not repeated:
            self.told_codes |= {code}
        logger.log(
            logging.DEBUG if repeated else logging.INFO,
            "error username=%s address=%s code=%s",
            self.username,
            self.client_address,
            code.value,
        )
        await self.send(
            text_data=protocol.error_frame(code, message, target=self.username)
        )

    def _signed_in_frame(self) -> str:
        assert self.session is not None
        return protocol.signed_in_frame(
            self.session.username,
            guest=self.session.credential.is_guest,
            ice_servers=self.ice.issue(self.session.username).servers,
        )

    # Channel-layer events.

    async def signal_relay(self, event):
        """Called when another session relays a frame to this one."""
        if self.ended:
            return
        if not (self.channel_layer_delivers_once or first_delivery(self, event)):
            return
        self.peers[event["sender"]] = event["sender_channel"]
        await self.send(text_data=event["frame"])

    async def relay_bounced(self, event):
        """Called when a relay reached an instance that had died."""
        if self.ended:
            return
        await self.send_error(
            ErrorCode.TARGET_NOT_FOUND, protocol.TARGET_NOT_FOUND_MESSAGE
        )

    async def peers_lost(self, event):
        """Called when an instance died: peers it served have left."""
        prefix = event["channel_prefix"]
        for peer, channel in list(self.peers.items()):
            if channel.startswith(prefix):
                await self.peer_left(
                    {"peer": peer, "channel": channel, "reason": "disconnected"}
                )

    async def peer_left(self, event):
        """Called when a session this one exchanged signaling with ended."""
        peer = event["peer"]
        if self.ended or self.peers.get(peer) != event["channel"]:
            return
        del self.peers[peer]
        await self.send(
            text_data=protocol.peer_left_frame(
                peer, target=self.username, reason=event["reason"]
            )
        )

    async def session_replaced(self, event):
        """Called when a sign-in elsewhere took this session's name over."""
        if self.ended:
            return
        await self.end("replaced")
        await self.send(text_data=protocol.session_replaced_frame(self.username))
        await self.close_with(protocol.CloseCode.SESSION_REPLACED)

    async def session_lost(self) -> None:
        """Called when this session could not be claimed again after Redis
        lost it: nobody could reach it, so the client must reconnect."""
        if self.ended:
            return
        await self.end("disconnected")
        await self.send(
            text_data=protocol.reconnect_frame(self.username, reason="session_lost")
        )
        await self.close_with(protocol.CloseCode.SESSION_LOST)

    async def session_disconnect(self, event):
        """Called when an administrator disconnects this session."""
        if self.ended:
            return
        await self.end("disconnected")
        metrics.error_sent(ErrorCode.DISCONNECTED_BY_ADMIN)
        await self.send(
            text_data=protocol.error_frame(
                ErrorCode.DISCONNECTED_BY_ADMIN, event["reason"], target=self.username
            )
        )
        await self.close_with(protocol.CloseCode.DISCONNECTED_BY_ADMIN)

    def cancel_sign_in_deadline(self) -> None:
        if self.sign_in_deadline is not None:
            self.sign_in_deadline.cancel()
            # The handle's callback refers to this consumer: keeping it
            # would leave the consumer to the cyclic garbage collector.
            self.sign_in_deadline = None

    async def disconnect(self, code):
        """Called when the socket closed, however it closed."""
        shutdown.forget(self)
        self.cancel_sign_in_deadline()
        if self.counted:
            self.counted = False
            guards.connections.closed(self.client_address)
        await self.end("disconnected")
        logger.info(
            "disconnect username=%s address=%s close_code=%s",
            self.username,
            self.client_address,
            code,
        )

    async def end(self, reason: str) -> None:
        """Release the name and tell peers, once, before the socket goes."""
        self.ice.stop()
        if self.ended or self.username is None:
            self.ended = True
            return
        self.ended = True
        username = self.username
        try:
            await session_release(
                self.channel_layer, username=username, channel_name=self.channel_name
            )
            for peer, channel in list(self.peers.items()):
                # A peer that has ended has released its name, and nothing
                # reads its channel any more: a message sent there would
                # wait out the layer's expiry (60 s) in memory or in Redis.
                if await registry.lookup(peer) != channel:
                    continue
                await self.channel_layer.send(
                    channel,
                    {
                        "type": "peer.left",
                        "peer": username,
                        "channel": self.channel_name,
                        "reason": reason,
                    },
                )
        except LAYER_ERRORS:
            metrics.layer_failed("release")
            logger.warning("could not release or notify peers username=%s", username)
        live_session_end(channel_name=self.channel_name)
        # A plain disconnect gets its own line just after this one.
        level = logging.DEBUG if reason == "disconnected" else logging.INFO
        logger.log(level, "sign-out username=%s reason=%s", username, reason)

    async def server_stopping(self, *, release: bool = True) -> None:
        """Called when this instance stops: tell the client to reconnect
        elsewhere.

        The name is released first, so the client can sign in again at once
        on another instance. The stop hook releases its leftovers in bulk
        instead (``release=False``).
        """
        shutdown.forget(self)
        if self.closing:
            return
        self.ice.stop()
        username = self.username
        if release and username is not None and not self.ended:
            try:
                await session_release(
                    self.channel_layer,
                    username=username,
                    channel_name=self.channel_name,
                )
            except LAYER_ERRORS:
                metrics.layer_failed("release")
                logger.warning("could not release username=%s while stopping", username)
            live_session_end(channel_name=self.channel_name)
        # No PeerLeft: the client comes back under the same name, and its
        # peer connections do not depend on this socket.
        self.ended = True
        try:
            await self.send(text_data=protocol.reconnect_frame(username))
            await self.close_with(protocol.CloseCode.SERVER_STOPPING)
            # Twisted drops connections without flushing their write buffers
            # once shutdown proceeds; give the frames time to leave.
            await asyncio.sleep(SHUTDOWN_FLUSH_SECONDS)
        except Exception:
            # Best effort: the process is going away either way.
            logger.warning("could not tell a client about the stop", exc_info=True)


async def on_reclaim(session: LocalSession, outcome: ReclaimOutcome) -> None:
    """Called for each session after Redis lost this process's claims."""
    if outcome is ReclaimOutcome.KEPT:
        layer = get_channel_layer()
        await layer.group_add(
            protocol.group_name(session.username), session.channel_name
        )
        return
    # The session is in this process: told directly, not through a broker
    # that has just failed it.
    consumer = shutdown.open_consumer(session.channel_name)
    if consumer is None:
        return
    if outcome is ReclaimOutcome.TAKEN:
        # Another instance took the name while this one was cut off.
        await consumer.session_replaced({"type": "session.replaced"})
    else:
        await consumer.session_lost()
