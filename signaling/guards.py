"""This process's abuse limits, configured from settings.

Counters are per process: with several instances each enforces its own caps
(documented in SECURITY.md).
"""

from __future__ import annotations

import time

from django.conf import settings

from .limits import ConnectionCounter, FailureWindow, TokenBucket
from .protocol import ErrorCode, ProtocolError

connections = ConnectionCounter()
failed_sign_ins_by_name = FailureWindow()
failed_sign_ins_by_address = FailureWindow()


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


def check_sign_in_attempts(username: str, address: str) -> None:
    """Raise ProtocolError if this name or address failed too often lately.

    Checked before any password is verified, so guessing costs the server
    no hashing either.
    """
    now = time.monotonic()
    window = settings.SIGNALING_FAILED_SIGN_IN_WINDOW_SECONDS
    if failed_sign_ins_by_name.count(
        username, now=now, window=window
    ) >= settings.SIGNALING_MAX_FAILED_SIGN_INS_PER_NAME or (
        failed_sign_ins_by_address.count(address, now=now, window=window)
        >= settings.SIGNALING_MAX_FAILED_SIGN_INS_PER_ADDRESS
    ):
        raise ProtocolError(
            ErrorCode.TOO_MANY_ATTEMPTS,
            "Too many failed sign-ins; try again later",
        )


def sign_in_failed(username: str, address: str) -> None:
    now = time.monotonic()
    failed_sign_ins_by_name.record(username, now=now)
    failed_sign_ins_by_address.record(address, now=now)


def reset() -> None:
    """Forget all counts (tests)."""
    connections.clear()
    failed_sign_ins_by_name.clear()
    failed_sign_ins_by_address.clear()
