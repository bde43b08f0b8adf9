"""This process's abuse limits, configured from settings.

Counters are per process: with several instances each enforces its own caps
(documented in SECURITY.md).
"""

from __future__ import annotations

import time

from django.conf import settings

from signaling.core.limits import (
    ConnectionCounter,
    FailureWindow,
    RecentSuccesses,
    TokenBucket,
)
from signaling.core.protocol import ErrorCode, ProtocolError

connections = ConnectionCounter()
failed_sign_ins_by_name = FailureWindow()
failed_sign_ins_by_address = FailureWindow()
# (address, name) pairs that signed in lately: a user who got in from a
# shared address before keeps getting in while a neighbour there guesses.
# A day covers a phone's reconnects; the bound keeps memory small (a few
# hundred bytes each) against a stream of distinct sign-ins.
FAMILIAR_FOR_SECONDS = 24 * 3600
FAMILIAR_PAIRS_KEPT = 20_000
familiar_sign_ins = RecentSuccesses(
    capacity=FAMILIAR_PAIRS_KEPT, ttl=FAMILIAR_FOR_SECONDS
)


def connection_refusal(address: str) -> ProtocolError | None:
    """Return the Error for a connection over a cap, or None to accept it."""
    reason = connections.refusal(
        address,
        per_address=settings.SIGNALING_MAX_CONNECTIONS_PER_ADDRESS,
        total=settings.SIGNALING_MAX_CONNECTIONS,
    )
    if reason == "server":
        return ProtocolError(
            ErrorCode.SERVER_FULL, "This server is full; try again later"
        )
    if reason == "address":
        return ProtocolError(
            ErrorCode.TOO_MANY_CONNECTIONS,
            "Too many connections from your address",
        )
    return None


def frame_bucket() -> TokenBucket:
    return TokenBucket(
        rate=settings.SIGNALING_FRAMES_PER_SECOND, burst=settings.SIGNALING_FRAME_BURST
    )


def refusal_bucket() -> TokenBucket:
    # Refused frames are answered, but a client that keeps flooding after
    # this many answers in a row (refilled at one per second) is closed.
    return TokenBucket(rate=1, burst=settings.SIGNALING_RATE_LIMIT_CLOSE_AFTER)


def check_sign_in_attempts(
    username: str, address: str, *, with_password: bool = True
) -> None:
    """Raise ProtocolError if this name or address failed too often lately.

    Checked before any password is verified, so guessing costs the server
    no hashing either. The per-name limit holds for everyone, from every
    address: it is what slows guessing one name's password. The per-address
    limit is there for guessing across many names from one address, and an
    address may be a carrier-grade NAT or a campus shared by hundreds
    (SECURITY.md), so over it only password attempts for names not signed
    in from that address lately are refused: a sign-in without a password
    guesses nothing, and a user who got in from there before is no guesser.
    """
    now = time.monotonic()
    window = settings.SIGNALING_FAILED_SIGN_IN_WINDOW_SECONDS
    if failed_sign_ins_by_name.count(
        username, now=now, window=window
    ) >= settings.SIGNALING_MAX_FAILED_SIGN_INS_PER_NAME or (
        with_password
        and failed_sign_ins_by_address.count(address, now=now, window=window)
        >= settings.SIGNALING_MAX_FAILED_SIGN_INS_PER_ADDRESS
        and not familiar_sign_ins.contains((address, username), now=now)
    ):
        raise ProtocolError(
            ErrorCode.TOO_MANY_ATTEMPTS,
            "Too many failed sign-ins; try again later",
        )


def sign_in_failed(username: str, address: str) -> None:
    now = time.monotonic()
    failed_sign_ins_by_name.record(username, now=now)
    failed_sign_ins_by_address.record(address, now=now)


def sign_in_succeeded(username: str, address: str) -> None:
    """Called when a sign-in claimed its name."""
    familiar_sign_ins.record((address, username), now=time.monotonic())


def reset() -> None:
    """Forget all counts (tests)."""
    connections.clear()
    failed_sign_ins_by_name.clear()
    failed_sign_ins_by_address.clear()
    familiar_sign_ins.clear()
