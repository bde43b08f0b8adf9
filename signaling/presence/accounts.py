"""Sign-in credentials: protected account names and guest names."""

from __future__ import annotations

import time

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password

from signaling.core.protocol import ErrorCode, ProtocolError
from signaling.presence.registry import Credential, guest_credential


class AccountNames:
    """The usernames that belong to accounts, cached in memory.

    Guest sign-ins (nearly all of them) then never wait for the database.
    Account changes in this process invalidate the cache at once (signals
    wired in apps.py); changes made elsewhere show within
    SIGNALING_ACCOUNT_CACHE_SECONDS.
    """

    def __init__(self) -> None:
        self.names: frozenset[str] = frozenset()
        self.loaded_at = float("-inf")

    def stale(self) -> bool:
        age = time.monotonic() - self.loaded_at
        return age >= settings.SIGNALING_ACCOUNT_CACHE_SECONDS

    def invalidate(self, **kwargs) -> None:
        self.loaded_at = float("-inf")

    def load(self) -> None:
        user_model = get_user_model()
        self.names = frozenset(
            user_model._default_manager.values_list(
                user_model.USERNAME_FIELD, flat=True
            )
        )
        self.loaded_at = time.monotonic()


account_names = AccountNames()


def _account_for(username: str) -> tuple[int, str, bool] | None:
    user_model = get_user_model()
    return (
        user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username})
        .values_list("pk", "password", "is_active")
        .first()
    )


async def credential_for(*, username: str, password: str | None) -> Credential:
    """Return what this sign-in proves, or raise ProtocolError.

    A name that belongs to a Django account needs that account's password;
    any other name is a guest name, claimed with whatever password (possibly
    none) its first sign-in gave.
    """
    if account_names.stale():
        await database_sync_to_async(account_names.load)()
    account = None
    if username in account_names.names:
        account = await database_sync_to_async(_account_for)(username)
    if account is None:
        if not settings.SIGNALING_ALLOW_GUESTS:
            raise ProtocolError(
                ErrorCode.GUESTS_DISABLED, "Only registered accounts may sign in"
            )
        return guest_credential(password)
    account_id, encoded, is_active = account
    if password is None:
        raise ProtocolError(
            ErrorCode.WRONG_CREDENTIALS, "This name is protected; a password is needed"
        )
    # Password hashing is slow by design: run it off the event loop, and off
    # the single database thread, so other users keep relaying meanwhile.
    valid = await sync_to_async(check_password, thread_sensitive=False)(
        password, encoded
    )
    if not valid or not is_active:
        raise ProtocolError(ErrorCode.WRONG_CREDENTIALS, "Wrong username or password")
    return Credential(account_id=account_id)
