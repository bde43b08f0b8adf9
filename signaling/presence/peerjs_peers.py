"""Who is connected over PeerJS, for ``{path}{key}/peers`` (discovery)."""

from __future__ import annotations

from signaling.core.peerjs import CLAIM_PREFIX
from signaling.presence.registry import LocalRegistry, registry

# Keys read per SCAN round trip.
SCAN_COUNT = 1000


async def peerjs_ids() -> list[str]:
    """Every connected PeerJS id, on every instance.

    With Redis, a claim of an instance that died counts until a look-up or
    its expiry removes it (a few seconds: SIGNALING_PRESENCE_TTL_SECONDS).
    """
    if isinstance(registry, LocalRegistry):
        names = [session.username for session in registry.local_sessions()]
    else:
        from signaling.presence.redis_presence import USER_PREFIX

        client = registry.redis_client()
        pattern = (USER_PREFIX + CLAIM_PREFIX).encode() + b"*"
        skip = len(USER_PREFIX)
        names = [
            key.decode("utf-8")[skip:]
            async for key in client.scan_iter(match=pattern, count=SCAN_COUNT)
        ]
    return sorted(
        name.removeprefix(CLAIM_PREFIX)
        for name in names
        if name.startswith(CLAIM_PREFIX)
    )
