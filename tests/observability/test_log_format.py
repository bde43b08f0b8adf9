"""Log lines: JSON on request, and never passwords, SDP or candidates."""

import asyncio
import datetime
import json
import logging
import sys
import urllib.request

import pytest

from signaling.observability.log_format import JsonFormatter
from tests.clients import Client

PASSWORD = "correct-horse-battery-staple-7731"
SDP = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
CANDIDATE = json.dumps(
    {
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "sdp": "candidate:842163049 1 udp 1677729535 198.51.100.77 49203 typ srflx",
        "serverUrl": "",
        "adapterType": "UNKNOWN",
    }
)
SECRETS = [PASSWORD, "4611731400430051336", "842163049", "198.51.100.77"]


def record(message="sign-in username=%s", args=("alice",), **kwargs):
    return logging.LogRecord(
        "signaling.ws.consumers", logging.INFO, __file__, 1, message, args, None, **kwargs
    )


def test_a_record_becomes_one_json_object_on_one_line():
    line = JsonFormatter().format(record())
    assert "\n" not in line
    entry = json.loads(line)
    assert set(entry) == {"timestamp", "level", "logger", "message"}
    assert entry["level"] == "INFO"
    assert entry["logger"] == "signaling.ws.consumers"
    assert entry["message"] == "sign-in username=alice"
    stamp = datetime.datetime.fromisoformat(entry["timestamp"])
    assert stamp.utcoffset() == datetime.timedelta(0)


def test_extra_fields_and_exceptions_are_structured_fields():
    entry_record = record()
    entry_record.username = "alice"
    entry_record.peer = object()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        entry_record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(entry_record))
    assert entry["username"] == "alice"
    assert entry["peer"].startswith("<object")
    assert "ValueError: boom" in entry["exception"]


def test_names_with_newlines_or_odd_characters_stay_on_one_line():
    line = JsonFormatter().format(record(args=("a\nb\u2028c\udc00",)))
    assert "\n" not in line and "\u2028" not in line
    line.encode("ascii")


@pytest.mark.parametrize("log_format", ["plain", "json"])
async def test_logs_of_a_session_hold_no_password_sdp_or_candidate(
    start_server, log_format
):
    server = start_server(SIGNALING_LOG_FORMAT=log_format)
    alice = await Client.connect(server.ws_url)
    assert (await alice.sign_in("alice", PASSWORD))["type"] == "SignedIn"
    bob = await Client.connect(server.ws_url)
    assert (await bob.sign_in("bob"))["type"] == "SignedIn"
    intruder = await Client.connect(server.ws_url)
    assert (await intruder.sign_in("alice", PASSWORD + "x"))["type"] == "Error"
    await alice.send_json({"type": "Offer", "target": "bob", "data": SDP})
    await alice.send_json({"type": "IceCandidates", "target": "bob", "data": CANDIDATE})
    assert (await bob.receive_json())["data"] == SDP
    assert (await bob.receive_json())["data"] == CANDIDATE
    await alice.send_json({"type": "Offer", "target": "nobody", "data": SDP})
    assert (await alice.receive_json())["code"] == "target_not_found"
    for client in (alice, bob, intruder):
        await client.close()
    server.stop()

    log = server.log_path.read_text(errors="replace")
    for secret in SECRETS:
        assert secret not in log
    ours = [line for line in log.splitlines() if "signaling" in line]
    assert any("sign-in username=alice" in line for line in ours)
    assert any("code=username_taken" in line for line in ours)
    if log_format == "json":
        # Daphne's own access lines (WSCONNECT ...) keep Daphne's format.
        entries = [
            json.loads(line) for line in log.splitlines() if line.startswith("{")
        ]
        assert {entry["logger"] for entry in entries} >= {"signaling.ws.consumers"}
        assert all(not line.startswith("20") for line in ours)
        for entry in entries:
            assert set(entry) >= {"timestamp", "level", "logger", "message"}


async def test_a_real_server_serves_metrics_to_the_token_holder(start_server):
    server = start_server(SIGNALING_METRICS_TOKEN="real-server-token")
    client = await Client.connect(server.ws_url)
    assert (await client.sign_in("alice"))["type"] == "SignedIn"
    request = urllib.request.Request(
        server.http_url + "/metrics",
        headers={"Authorization": "Bearer real-server-token"},
    )

    def fetch() -> str:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read().decode()

    body = await asyncio.to_thread(fetch)
    assert "signaling_users_signed_in 1.0" in body
    assert 'signaling_sign_ins_total{outcome="ok",protocol="app"} 1.0' in body
    await client.close()
