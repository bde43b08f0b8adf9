"""ICE servers handed to clients: STUN URLs and TURN credentials.

Pure code: no Django, no ``await``, no I/O. Builds the list a browser passes
to ``new RTCPeerConnection({iceServers})``::

    [{"urls": ["stun:..."]},
     {"urls": ["turn:..."], "username": "...", "credential": "..."}]

TURN credentials are either static (one username and password for everyone)
or minted per session with a secret shared with the TURN server, the TURN
REST convention (draft-uberti-behave-turn-rest-00) that coturn's
``use-auth-secret`` accepts: the username is ``<expiry unix time>:<name>``
and the credential is ``base64(HMAC-SHA1(secret, username))``. The TURN
server recomputes the credential from the username, so nothing is stored,
and refuses new allocations once the expiry has passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

STUN_SCHEMES = ("stun:", "stuns:")
TURN_SCHEMES = ("turn:", "turns:")
# Fresh credentials are pushed when this share of their lifetime has passed,
# leaving the rest for the client to use them in new connections.
REFRESH_AT_FRACTION = 0.8
# A STUN USERNAME is under 513 bytes (RFC 8489 section 14.3); a 64-character
# name percent-encoded can be 768. Names longer than this once encoded are
# replaced by a digest, which still tells sessions apart in TURN logs.
MAX_ENCODED_NAME_LENGTH = 200


@dataclass(frozen=True, slots=True)
class IceConfig:
    """The ICE servers this deployment offers (from settings)."""

    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    # Static TURN credentials, the same for every client.
    turn_username: str = ""
    turn_credential: str = ""
    # Shared secret for per-session credentials (TURN REST convention).
    turn_secret: str = ""
    credential_ttl_seconds: int = 3600

    def __post_init__(self) -> None:
        for url in self.stun_urls:
            if not url.startswith(STUN_SCHEMES):
                raise ValueError(
                    f"STUN URL must start with stun: or stuns:, not {url!r}"
                )
        for url in self.turn_urls:
            if not url.startswith(TURN_SCHEMES):
                raise ValueError(
                    f"TURN URL must start with turn: or turns:, not {url!r}"
                )
        static = bool(self.turn_username or self.turn_credential)
        if self.turn_secret and static:
            raise ValueError(
                "set either a TURN secret or a static TURN username and credential, "
                "not both"
            )
        if static and not (self.turn_username and self.turn_credential):
            raise ValueError("a static TURN username needs a credential, and back")
        if self.turn_urls and not (self.turn_secret or static):
            # Browsers refuse a turn: URL without credentials outright.
            raise ValueError("TURN URLs need a TURN secret or static credentials")
        if (self.turn_secret or static) and not self.turn_urls:
            raise ValueError("TURN credentials are set but no TURN URLs")
        if self.credential_ttl_seconds < 1:
            raise ValueError("the TURN credential lifetime must be at least 1 second")

    @classmethod
    def from_settings(cls, settings: Any) -> IceConfig:
        """Build from an object with the ``SIGNALING_*`` attributes."""
        return cls(
            stun_urls=tuple(settings.SIGNALING_STUN_URLS),
            turn_urls=tuple(settings.SIGNALING_TURN_URLS),
            turn_username=settings.SIGNALING_TURN_USERNAME,
            turn_credential=settings.SIGNALING_TURN_CREDENTIAL,
            turn_secret=settings.SIGNALING_TURN_SECRET,
            credential_ttl_seconds=settings.SIGNALING_TURN_CREDENTIAL_TTL_SECONDS,
        )


@dataclass(frozen=True, slots=True)
class IceServers:
    """What one client is told: the server list and when it stops working."""

    servers: list[dict[str, Any]]
    # Unix time after which the TURN credentials are refused for new
    # allocations; None when nothing expires.
    expires_at: int | None
    # Seconds until fresh credentials should be pushed; None for never.
    refresh_in: float | None


def turn_rest_username(name: str, *, expires_at: int) -> str:
    """Return the TURN REST username for ``name``: ``<expiry>:<name>``.

    The name is percent-encoded (UTF-8, everything but ``A-Za-z0-9_.-~``):
    coturn silently drops requests whose username holds a space, a quote, a
    backslash or words such as `` OR `` (its SQL-injection filter), and an
    encoded name needs no Unicode normalization to match on both sides.
    """
    encoded = quote(name, safe="")
    if len(encoded) > MAX_ENCODED_NAME_LENGTH:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]
        encoded = f"sha256-{digest}"
    return f"{expires_at}:{encoded}"


def turn_rest_credential(secret: str, username: str) -> str:
    """Return ``base64(HMAC-SHA1(secret, username))``, coturn's REST password."""
    mac = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def ice_servers_for(config: IceConfig, *, username: str, now: float) -> IceServers:
    """Return the ICE servers for ``username``'s session at unix time ``now``."""
    servers: list[dict[str, Any]] = []
    if config.stun_urls:
        servers.append({"urls": list(config.stun_urls)})
    expires_at: int | None = None
    refresh_in: float | None = None
    if config.turn_urls and config.turn_secret:
        ttl = config.credential_ttl_seconds
        expires_at = int(now) + ttl
        turn_username = turn_rest_username(username, expires_at=expires_at)
        servers.append(
            {
                "urls": list(config.turn_urls),
                "username": turn_username,
                "credential": turn_rest_credential(config.turn_secret, turn_username),
            }
        )
        refresh_in = ttl * REFRESH_AT_FRACTION
    elif config.turn_urls:
        servers.append(
            {
                "urls": list(config.turn_urls),
                "username": config.turn_username,
                "credential": config.turn_credential,
            }
        )
    return IceServers(servers=servers, expires_at=expires_at, refresh_in=refresh_in)
