"""Protected names: an account's name needs its password from the moment the
account exists, whatever the name cache held before."""

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from tests.communicators import Peer, signed_in

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("background_tasks_stopped"),
]


async def test_an_account_created_after_the_names_were_cached_protects_its_name_at_once(
    settings,
):
    # Long enough that only the invalidation on save can reload the names.
    settings.SIGNALING_ACCOUNT_CACHE_SECONDS = 3600
    # A guest sign-in loads the cache while "carol" is no account.
    guest = await signed_in("carol")
    await guest.close()
    await sync_to_async(User.objects.create_user)("carol", password="correct horse")
    # No wait: the very next sign-in needs the account's password.
    peer = await Peer.connect()
    assert (await peer.sign_in("carol"))["code"] == "wrong_credentials"
    assert (await peer.sign_in("carol", "a guest password"))["code"] == "wrong_credentials"
    assert (await peer.sign_in("carol", "correct horse"))["type"] == "SignedIn"

