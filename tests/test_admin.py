"""The live sessions admin: staff only, read-only, escaped, with a disconnect."""

import datetime

import pytest
from asgiref.sync import sync_to_async
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from signaling.models import LiveSession, ServerProcess
from signaling.presence.live_sessions import heartbeat_stop
from tests.communicators import signed_in

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("background_tasks_stopped"),
]

CHANGELIST = "/admin/signaling/livesession/"


@pytest.fixture
def admin_client_logged_in(db):
    User.objects.create_superuser("root", password="pw-for-tests")
    client = Client()
    client.login(username="root", password="pw-for-tests")
    return client


def make_row(**overrides):
    now = timezone.now()
    process, _ = ServerProcess.objects.get_or_create(
        name="host:1:abc",
        defaults={"host": "host", "pid": 1, "started_at": now, "last_heartbeat": now},
    )
    fields = {
        "username": "alice",
        "channel_name": "specific.test!abc",
        "process": process,
        "client_address": "127.0.0.1",
        "user_agent": "okhttp",
        "connected_at": now - datetime.timedelta(minutes=5),
        "last_seen": now,
    }
    fields.update(overrides)
    return LiveSession.objects.create(**fields)


def test_the_list_is_for_staff_only(db):
    User.objects.create_user("visitor", password="pw-for-tests")
    client = Client()
    assert client.get(CHANGELIST).status_code == 302
    client.login(username="visitor", password="pw-for-tests")
    assert client.get(CHANGELIST).status_code == 302


def test_usernames_and_user_agents_render_escaped(admin_client_logged_in):
    make_row(username="<script>alert(1)</script>", user_agent="<img src=x onerror=1>")
    page = admin_client_logged_in.get(CHANGELIST).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page
    assert "5\xa0minutes" in page  # how long it has been connected


def test_sessions_can_be_searched_and_filtered(admin_client_logged_in):
    make_row()
    make_row(username="bob", channel_name="specific.test!bob")
    page = admin_client_logged_in.get(CHANGELIST, {"q": "bob"}).content.decode()
    assert "bob" in page and ">alice<" not in page
    guests = admin_client_logged_in.get(CHANGELIST, {"kind": "guest"})
    assert guests.status_code == 200 and "alice" in guests.content.decode()


def test_the_list_shows_each_sessions_protocol(admin_client_logged_in):
    make_row()
    make_row(username="peerjs:bob", channel_name="specific.test!bob")
    page = admin_client_logged_in.get(CHANGELIST).content.decode()
    assert '<td class="field-protocol">PeerJS</td>' in page
    assert '<td class="field-protocol">app</td>' in page


def test_sessions_cannot_be_added_or_edited(admin_client_logged_in):
    row = make_row()
    assert admin_client_logged_in.get(CHANGELIST + "add/").status_code == 403
    change = admin_client_logged_in.get(f"{CHANGELIST}{row.pk}/change/")
    assert change.status_code == 200
    assert b'name="_save"' not in change.content


async def test_the_list_shows_a_connected_user_and_the_action_disconnects_it(
    admin_client_logged_in,
):
    alice = await signed_in("alice")
    for _ in range(100):
        page = await sync_to_async(admin_client_logged_in.get)(CHANGELIST)
        if "alice" in page.content.decode():
            break
    assert "alice" in page.content.decode()
    row = await sync_to_async(LiveSession.objects.get)(username="alice")
    response = await sync_to_async(admin_client_logged_in.post)(
        CHANGELIST,
        {"action": "disconnect", "_selected_action": [row.pk]},
        follow=True,
    )
    assert response.status_code == 200
    error = await alice.receive()
    assert error["code"] == "disconnected_by_admin"
    assert await alice.receive_close() == 4002
    entry = await sync_to_async(LogEntry.objects.get)()
    assert "Disconnected" in entry.get_change_message()
    await heartbeat_stop()
