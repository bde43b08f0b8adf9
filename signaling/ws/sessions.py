"""What both protocols' consumers do with presence and the channel layer.

Claiming a name, relaying to the channel that holds one, dropping a second
delivery and releasing the name at the end: the app protocol's consumer
(``consumers.py``) and PeerJS's (``peerjs_consumer.py``) differ only in
their frames.
"""

from __future__ import annotations

import logging

from channels.exceptions import ChannelFull

from signaling.core import protocol
from signaling.core.protocol import ErrorCode, ProtocolError
from signaling.observability import metrics
from signaling.presence.registry import Claimed, LocalSession, Taken, registry

logger = logging.getLogger(__name__)

# Relays remembered per connection to drop a second delivery of one: Redis
# delivers at least once when it fails over (channels-redis puts back what
# a receiver popped but had not acknowledged), and a duplicate arrives
# within moments of the original.
RECENT_RELAYS_KEPT = 256


async def session_claim(layer, session: LocalSession) -> Claimed | Taken:
    """Claim ``session.username`` for ``session``; tell a replaced holder.

    The connection joins the name's group before claiming, so the name is
    never claimed but unreachable. The replaced holder may be on another
    instance: it is told through the layer, and its place in the group
    taken.
    """
    group = protocol.group_name(session.username)
    await layer.group_add(group, session.channel_name)
    outcome = await registry.claim(session)
    if not isinstance(outcome, Claimed):
        await layer.group_discard(group, session.channel_name)
        return outcome
    if outcome.replaced_channel is not None:
        await layer.group_discard(group, outcome.replaced_channel)
        await layer.send(outcome.replaced_channel, {"type": "session.replaced"})
    return outcome


async def session_release(layer, *, username: str, channel_name: str) -> None:
    """Release a name this connection holds (raises LAYER_ERRORS)."""
    await registry.release(username=username, channel_name=channel_name)
    await layer.group_discard(protocol.group_name(username), channel_name)


def relay_failure(error: BaseException, *, username) -> ProtocolError:
    """What the sender is told when the layer did not take its relay (one of
    LAYER_ERRORS); counted and, unless the target was merely full, logged.

    Consumers send a relay to the target's own channel, not its group: both
    layers' group_send drop messages for a full channel silently, while send
    raises, so the sender can be told.
    """
    if isinstance(error, ChannelFull):
        metrics.layer_failed("full")
        return ProtocolError(
            ErrorCode.TARGET_BUSY,
            "The target is not keeping up with its messages; try again later",
        )
    metrics.layer_failed("send")
    logger.warning("relay failed username=%s", username, exc_info=error)
    return ProtocolError(ErrorCode.RELAY_FAILED, "Could not deliver the message; try again")


def first_delivery(consumer, event: dict) -> bool:
    """Whether this relay reaches ``consumer`` for the first time; False for
    a repeat, which is counted and must be dropped.

    Only layers that may repeat need asking (consumers skip the call when
    ``channel_layer_delivers_once``). ``consumer.recent_relays`` starts as
    None: most connections never receive a relay, and an empty dict per
    idle connection costs memory for nothing.
    """
    key = (event["sender_channel"], event.get("seq", -1))
    recent = consumer.recent_relays
    if recent is None:
        recent = consumer.recent_relays = {}
    elif key in recent:
        metrics.duplicate_dropped()
        return False
    recent[key] = None
    if len(recent) > RECENT_RELAYS_KEPT:
        del recent[next(iter(recent))]
    return True
