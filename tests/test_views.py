"""HTTP endpoints: the original's health answer, /healthz and 404s."""

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


async def test_unknown_paths_get_a_404(async_client):
    response = await async_client.get("/no/such/page")
    assert response.status_code == 404
