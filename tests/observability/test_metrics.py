"""GET /metrics: off by default, protected, and counting what happens."""

import gc

import pytest
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from prometheus_client.parser import text_string_to_metric_families

from signaling.core import peerjs
from signaling.core.protocol import MessageType
from signaling.observability.metrics import RelayCollector, RelayStats, access_status
from tests.communicators import Peer, signed_in

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("background_tasks_stopped"),
]

TOKEN = "metrics-test-token-0123456789"


def samples(body: bytes) -> dict[tuple[str, tuple], float]:
    """Parse a scrape into {(sample name, sorted labels): value}."""
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def scrape(async_client) -> dict[tuple[str, tuple], float]:
    # Connections earlier tests left open are counted until collected.
    gc.collect()
    response = await async_client.get(
        "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return samples(response.content)


async def test_metrics_are_off_by_default(async_client):
    assert (await async_client.get("/metrics")).status_code == 404


async def test_a_missing_or_wrong_token_is_refused(async_client, settings):
    settings.SIGNALING_METRICS_TOKEN = TOKEN
    missing = await async_client.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    for header in [f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", TOKEN]:
        response = await async_client.get("/metrics", headers={"Authorization": header})
        assert response.status_code == 401, header
    assert b"signaling_" not in missing.content


async def test_the_right_token_gets_every_signaling_metric(async_client, settings):
    settings.SIGNALING_METRICS_TOKEN = TOKEN
    names = {name for name, _ in await scrape(async_client)}
    assert {
        "signaling_connections_open",
        "signaling_users_signed_in",
        "signaling_sign_ins_total",
        "signaling_relayed_frames_total",
        "signaling_errors_total",
        "signaling_relay_seconds_bucket",
        "signaling_relay_seconds_count",
        "signaling_channel_layer_failures_total",
        "signaling_ready",
    } <= names
    openmetrics = await async_client.get(
        "/metrics",
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/openmetrics-text;version=1.0.0",
        },
    )
    assert openmetrics["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.content.endswith(b"# EOF\n")


async def test_addresses_outside_the_allowed_list_are_forbidden(async_client, settings):
    # The test client connects from 127.0.0.1.
    settings.SIGNALING_METRICS_ALLOWED_IPS = ["10.0.0.0/8", "::1"]
    assert (await async_client.get("/metrics")).status_code == 403
    settings.SIGNALING_METRICS_ALLOWED_IPS = ["10.0.0.0/8", "127.0.0.0/8"]
    assert (await async_client.get("/metrics")).status_code == 200


async def test_with_a_token_and_addresses_both_must_pass(async_client, settings):
    settings.SIGNALING_METRICS_TOKEN = TOKEN
    settings.SIGNALING_METRICS_ALLOWED_IPS = ["127.0.0.1"]
    assert (await async_client.get("/metrics")).status_code == 401
    await scrape(async_client)
    settings.SIGNALING_METRICS_ALLOWED_IPS = ["192.0.2.1"]
    response = await async_client.get(
        "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 403


def test_access_rules_without_http():
    def status(**kwargs):
        defaults = {
            "token": "",
            "allowed": [],
            "authorization": None,
            "address": "127.0.0.1",
        }
        return access_status(**{**defaults, **kwargs})

    assert status() == 404
    assert status(token="t", authorization="bearer t") == 200
    assert status(token="t", authorization="Bearer  t ") == 200
    assert status(token="t", authorization="Bearer T") == 401
    assert status(allowed=["127.0.0.1"]) == 200
    assert status(allowed=["127.0.0.1"], address="") == 403
    assert status(allowed=["2001:db8::/32"], address="2001:db8::5") == 200


async def test_counters_move_after_a_sign_in_a_relay_and_an_error(
    async_client, settings
):
    settings.SIGNALING_METRICS_TOKEN = TOKEN
    before = await scrape(async_client)

    alice = await signed_in("alice", "pw")
    bob = await signed_in("bob")
    mallory = await Peer.connect()
    assert (await mallory.sign_in("alice", "wrong"))["code"] == "username_taken"
    await alice.send(type="Offer", target="bob", data="v=0")
    assert (await bob.receive())["type"] == "Offer"
    await alice.send(type="Offer", target="nobody", data="v=0")
    assert (await alice.receive())["code"] == "target_not_found"
    replacement = await Peer.connect()
    assert (await replacement.sign_in("alice", "pw"))["type"] == "SignedIn"

    after = await scrape(async_client)

    def moved(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("signaling_connections_open") == 4
    assert moved("signaling_users_signed_in") == 2
    assert moved("signaling_sign_ins_total", protocol="app", outcome="ok") == 2
    assert moved("signaling_sign_ins_total", protocol="app", outcome="replaced") == 1
    assert (
        moved("signaling_sign_ins_total", protocol="app", outcome="username_taken") == 1
    )
    assert moved("signaling_relayed_frames_total", protocol="app", type="Offer") == 1
    assert moved("signaling_relay_seconds_count", protocol="app") == 1
    assert moved("signaling_relay_seconds_count", protocol="peerjs") == 0
    assert moved("signaling_errors_total", code="target_not_found") == 1
    assert moved("signaling_errors_total", code="username_taken") == 1
    assert moved("signaling_channel_layer_failures_total", operation="send") == 0
    for peer in (alice, bob, mallory, replacement):
        await peer.close()
    final = await scrape(async_client)
    for gauge in ("signaling_connections_open", "signaling_users_signed_in"):
        assert final[(gauge, ())] == before[(gauge, ())]


@pytest.mark.parametrize(
    "failure, code, operation",
    [(ChannelFull, "target_busy", "full"), (OSError, "relay_failed", "send")],
)
async def test_channel_layer_failures_are_counted_by_operation(
    async_client, settings, monkeypatch, failure, code, operation
):
    settings.SIGNALING_METRICS_TOKEN = TOKEN
    alice, bob = await signed_in("alice"), await signed_in("bob")
    before = await scrape(async_client)

    async def refuse(channel, message):
        raise failure()

    monkeypatch.setattr(get_channel_layer(), "send", refuse)
    await alice.send(type="Offer", target="bob", data="v=0")
    assert (await alice.receive())["code"] == code
    after = await scrape(async_client)
    key = ("signaling_channel_layer_failures_total", (("operation", operation),))
    assert after[key] - before[key] == 1
    errors = ("signaling_errors_total", (("code", code),))
    assert after[errors] - before[errors] == 1
    assert await bob.receive_nothing()
    await alice.close()
    await bob.close()


async def test_readiness_is_a_gauge_per_check_set_at_scrape(async_client, settings):
    from tests.servers import free_port

    settings.SIGNALING_METRICS_TOKEN = TOKEN
    ready = await scrape(async_client)
    assert ready[("signaling_ready", (("check", "database"),))] == 1
    assert ready[("signaling_ready", (("check", "channel_layer"),))] == 1
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},
        }
    }
    down = await scrape(async_client)
    assert down[("signaling_ready", (("check", "database"),))] == 1
    assert down[("signaling_ready", (("check", "channel_layer"),))] == 0


def test_a_bad_allowed_address_stops_the_server_at_start(settings):
    settings.SIGNALING_METRICS_ALLOWED_IPS = ["10.0.0.300"]
    with pytest.raises(ImproperlyConfigured, match="SIGNALING_METRICS_ALLOWED_IPS"):
        apps.get_app_config("signaling").ready()


def test_relay_stats_count_like_a_prometheus_histogram_per_protocol():
    app = RelayStats("app", [MessageType.OFFER, MessageType.ANSWER], (0.001, 0.01))
    other = RelayStats("peerjs", [peerjs.MessageType.OFFER], (0.001, 0.01))
    # On a bound counts in that bucket; above the last only in +Inf.
    for seconds in (0.0005, 0.001, 0.002, 0.01, 3.0):
        app.relayed(MessageType.OFFER, seconds)
    app.relayed(MessageType.ANSWER, 0.0001)
    other.relayed(peerjs.MessageType.OFFER, 0.02)
    frames, histogram = RelayCollector(app, other).collect()
    assert {(s.labels["protocol"], s.labels["type"]): s.value for s in frames.samples} == {
        ("app", "Offer"): 5,
        ("app", "Answer"): 1,
        ("peerjs", "OFFER"): 1,
    }
    values = {
        (s.labels["protocol"], s.name, s.labels.get("le")): s.value
        for s in histogram.samples
    }
    assert values == {
        ("app", "signaling_relay_seconds_bucket", "0.001"): 3,
        ("app", "signaling_relay_seconds_bucket", "0.01"): 5,
        ("app", "signaling_relay_seconds_bucket", "+Inf"): 6,
        ("app", "signaling_relay_seconds_count", None): 6,
        ("app", "signaling_relay_seconds_sum", None): pytest.approx(3.0136),
        ("peerjs", "signaling_relay_seconds_bucket", "0.001"): 0,
        ("peerjs", "signaling_relay_seconds_bucket", "0.01"): 0,
        ("peerjs", "signaling_relay_seconds_bucket", "+Inf"): 1,
        ("peerjs", "signaling_relay_seconds_count", None): 1,
        ("peerjs", "signaling_relay_seconds_sum", None): pytest.approx(0.02),
    }
