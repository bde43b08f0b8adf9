"""Sign-in credentials: protected account names and guest names."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password

from .presence import Credential, guest_credential
from .protocol import ErrorCode, ProtocolError


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
