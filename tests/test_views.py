"""HTTP endpoints: the original's health answer, liveness, readiness, 404s."""

import json
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_root_answers_like_the_original_server(async_client):
    response = await async_client.get("/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == "Server is running ✅"


async def test_healthz_reports_database_channel_layer_and_sessions(async_client):
    response = await async_client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["channel_layer"]["ok"]
    assert body["live_sessions"] == 0


async def test_healthz_answers_503_when_the_channel_layer_is_down(
    async_client, settings
):
    from tests.servers import free_port

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},
        }
    }
    response = await async_client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["channel_layer"]["ok"] is False
    assert body["database"]["ok"] is True
    assert (await async_client.get("/readyz")).status_code == 503
    # Nothing shared is asked: a Redis outage restarts nobody.
    live = await async_client.get("/livez")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}


async def test_livez_answers_ok_with_a_tiny_body(async_client):
    response = await async_client.get("/livez")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


async def test_a_draining_instance_is_not_ready_but_alive(async_client, monkeypatch):
    from signaling.ws import shutdown

    monkeypatch.setattr(shutdown, "_draining", True)
    for path in ("/healthz", "/readyz"):
        response = await async_client.get(path)
        assert response.status_code == 503
        assert response.json()["status"] == "draining"
    assert (await async_client.get("/livez")).status_code == 200


async def test_readyz_is_healthz_under_the_kubernetes_name(async_client):
    response = await async_client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json().keys() == (await async_client.get("/healthz")).json().keys()


async def test_unknown_paths_get_a_404(async_client):
    response = await async_client.get("/no/such/page")
    assert response.status_code == 404


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_with_the_database_down_readiness_is_503_and_liveness_200(start_server):
    """A real Daphne whose PostgreSQL has nothing listening."""
    from tests.servers import free_port

    server = start_server(
        database_url=f"postgres://signaling:x@127.0.0.1:{free_port()}/signaling"
    )
    status, body = get(server.http_url + "/healthz")
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["database"]["ok"] is False
    assert body["channel_layer"]["ok"] is True
    assert get(server.http_url + "/readyz")[0] == 503
    assert get(server.http_url + "/livez") == (200, {"status": "ok"})
