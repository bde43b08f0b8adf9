"""Session records, process heartbeats, sweeping and membership renewal."""

import asyncio
import datetime

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.utils import timezone

from signaling.models import LiveSession, ServerProcess
from signaling.presence import live_sessions
from signaling.presence.live_sessions import PROCESS_NAME
from tests.communicators import signed_in

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("background_tasks_stopped"),
]


async def rows(*fields) -> list[tuple]:
    return await sync_to_async(list)(LiveSession.objects.values_list(*fields))


async def eventually(get, expected, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await get()) != expected:
        assert asyncio.get_running_loop().time() < deadline, value
        await asyncio.sleep(0.05)


async def assert_reachable(peer, username: str) -> None:
    """A relay addressed to ``username`` reaches ``peer``: its session is
    still connected and registered."""
    sender = await signed_in(f"{username}-caller")
    await sender.send(type="Offer", target=username, data="still there?")
    frame = await peer.receive()
    assert (frame["type"], frame["username"], frame["data"]) == (
        "Offer",
        f"{username}-caller",
        "still there?",
    )


def make_process(name: str, *, age_seconds: float) -> ServerProcess:
    beat = timezone.now() - datetime.timedelta(seconds=age_seconds)
    return ServerProcess.objects.create(
        name=name, host="h", pid=1, started_at=beat, last_heartbeat=beat
    )


def make_session(process: ServerProcess, username: str) -> LiveSession:
    now = timezone.now()
    return LiveSession.objects.create(
        username=username,
        channel_name=f"specific.{username}!x",
        process=process,
        connected_at=now,
        last_seen=now,
    )


def test_the_sweep_command_removes_sessions_of_silent_processes(capsys):
    make_session(make_process("dead:1:a", age_seconds=600), "ghost")
    make_session(make_process("alive:2:b", age_seconds=1), "alice")
    call_command("sweep_sessions", "--stale-after", "60")
    assert list(LiveSession.objects.values_list("username", flat=True)) == ["alice"]
    assert list(ServerProcess.objects.values_list("name", flat=True)) == ["alive:2:b"]
    assert "Swept 1 session" in capsys.readouterr().out


def test_sweeping_twice_is_harmless():
    make_session(make_process("dead:1:a", age_seconds=600), "ghost")
    call_command("sweep_sessions", "--stale-after", "60")
    call_command("sweep_sessions", "--stale-after", "60")
    assert LiveSession.objects.count() == 0


async def test_the_heartbeat_sweeps_dead_processes_and_keeps_its_own(settings):
    settings.SIGNALING_HEARTBEAT_SECONDS = 0.1
    await sync_to_async(make_session)(
        await sync_to_async(make_process)("dead:1:a", age_seconds=600), "ghost"
    )
    alice = await signed_in("alice")
    await eventually(lambda: rows("username", "process_id"), [("alice", PROCESS_NAME)])
    await assert_reachable(alice, "alice")


async def test_a_process_swept_while_alive_writes_its_sessions_again(settings):
    settings.SIGNALING_HEARTBEAT_SECONDS = 0.1
    alice = await signed_in("alice")
    await eventually(lambda: rows("username"), [("alice",)])
    # As if this process had been stopped long enough to be declared dead.
    await sync_to_async(ServerProcess.objects.all().delete)()
    assert await rows("username") == []
    await eventually(lambda: rows("username"), [("alice",)])
    await assert_reachable(alice, "alice")


async def test_a_batch_writes_every_field_and_a_later_session_of_a_name_overwrites_it():
    from signaling.presence.registry import Credential, LocalSession

    def session(channel: str, address: str, connected_at: float) -> LocalSession:
        return LocalSession(
            username="carol",
            channel_name=channel,
            credential=Credential(),
            client_address=address,
            user_agent="okhttp/4.12",
            connected_at=connected_at,
        )

    now = timezone.now()
    earlier = now.timestamp() - 120

    def write(sessions):
        ServerProcess.objects.update_or_create(
            name=PROCESS_NAME,
            defaults={"host": "h", "pid": 1, "started_at": now, "last_heartbeat": now},
        )
        live_sessions._write_sessions(sessions, now)

    await sync_to_async(write)([session("specific.a!1", "10.0.0.1", earlier)])
    # The same name again, later, from elsewhere: one row, the later one.
    await sync_to_async(write)([session("specific.a!2", "10.0.0.2", earlier + 60)])
    [row] = await sync_to_async(list)(LiveSession.objects.all())
    assert (row.username, row.channel_name, row.client_address, row.user_agent) == (
        "carol",
        "specific.a!2",
        "10.0.0.2",
        "okhttp/4.12",
    )
    assert (row.process_id, row.account_id) == (PROCESS_NAME, None)
    assert abs(row.connected_at.timestamp() - (earlier + 60)) < 0.001
    assert row.last_seen == now


def channel_layers_with_group_expiry(seconds: int) -> dict:
    return {
        "default": {
            "BACKEND": "signaling.ws.channels_layer.SignalingInMemoryChannelLayer",
            "CONFIG": {"group_expiry": seconds},
        }
    }


async def send_to_group_of(username: str, text: str) -> None:
    """Address a user by name, as other server code may, through its group."""
    from channels.layers import get_channel_layer

    from signaling.core.protocol import group_name

    event = {
        "type": "signal.relay",
        "frame": '{"%s":true}' % text,
        "sender": "server",
        "sender_channel": "",
    }
    await get_channel_layer().group_send(group_name(username), event)


async def test_a_member_outliving_the_group_expiry_still_receives(settings):
    settings.CHANNEL_LAYERS = channel_layers_with_group_expiry(1)
    settings.SIGNALING_HEARTBEAT_SECONDS = 0.2
    settings.SIGNALING_GROUP_REFRESH_SECONDS = 0.2
    bob = await signed_in("bob")
    await asyncio.sleep(3.5)
    await send_to_group_of("bob", "late")
    assert await bob.receive() == {"late": True}


async def test_without_renewal_the_membership_would_have_expired(settings):
    """The control for the test above: it can tell renewal from luck."""
    settings.CHANNEL_LAYERS = channel_layers_with_group_expiry(1)
    settings.SIGNALING_HEARTBEAT_SECONDS = 0.2
    settings.SIGNALING_GROUP_REFRESH_SECONDS = 3600
    bob = await signed_in("bob")
    await asyncio.sleep(3.5)
    await send_to_group_of("bob", "late")
    assert await bob.receive_nothing(0.5)


def test_the_process_name_identifies_host_and_pid():
    import os

    host, pid, _token = live_sessions.PROCESS_NAME.split(":")
    assert int(pid) == os.getpid() and host
