import asyncio
import time
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from signaling.observability.metrics import access_status as metrics_access_status
from signaling.observability.metrics import (
    readiness_observed as metrics_readiness_observed,
)
from signaling.presence.peerjs_peers import peerjs_ids
from signaling.presence.registry import registry
from signaling.ws import shutdown
from signaling.ws.connection_info import client_address

# A health probe must answer well inside a platform's check timeout.
HEALTH_CHECK_TIMEOUT_SECONDS = 2.0
# Prometheus' default scrape timeout is 10 s; a scrape must not hang on a
# dead Redis.
METRICS_READINESS_TIMEOUT_SECONDS = 1.0


@require_safe
def index(request):
    """The original server's answer; platform health checks poll it."""
    return HttpResponse("Server is running ✅", content_type="text/plain; charset=utf-8")


def _database_ok() -> None:
    # Django runs this in a thread of its own for each request, and a
    # thread's connection cannot be reused by the next request: close it
    # rather than leave it (and its socket) to the garbage collector.
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


async def _channel_layer_ok() -> None:
    # A real round trip: send to a fresh channel and read the message back.
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.check"})
    await layer.receive(channel)


async def _check(name, awaitable, results, timeout):
    started = time.perf_counter()
    try:
        await asyncio.wait_for(awaitable, timeout)
    except Exception as error:  # any failure means "not ready"
        results[name] = {"ok": False, "error": type(error).__name__}
    else:
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        results[name] = {"ok": True, "ms": elapsed_ms}


async def readiness(timeout: float = HEALTH_CHECK_TIMEOUT_SECONDS) -> dict:
    """Check the database and the channel layer at once; each answer is
    ``{"ok": True, "ms": ...}`` or ``{"ok": False, "error": ...}``."""
    results: dict = {}
    await asyncio.gather(
        _check("database", sync_to_async(_database_ok)(), results, timeout),
        _check("channel_layer", _channel_layer_ok(), results, timeout),
    )
    return results


@require_safe
async def livez(request):
    """Liveness: this process's event loop answers and Django is loaded.

    Touches nothing shared, on purpose: the platform restarts an instance
    whose liveness check fails, and restarting every instance cannot mend a
    Redis or database outage (they would all reconnect together when it
    ends). Those belong to readiness.
    """
    return JsonResponse({"status": "ok"})


@require_safe
async def healthz(request):
    """Readiness: database and channel-layer state, and live sessions on
    this process; 503 when either check fails, or while this process drains
    before stopping (a load balancer must send nobody new here)."""
    if shutdown.draining():
        body = {"status": "draining", "live_sessions": len(registry)}
        return JsonResponse(body, status=503)
    results = await readiness()
    ready = all(check["ok"] for check in results.values())
    body = {
        "status": "ok" if ready else "unavailable",
        **results,
        "live_sessions": len(registry),
    }
    return JsonResponse(body, status=200 if ready else 503)


# The web client builds every page element itself and shows user text only
# through textContent; the policy makes an injection mistake inert anyway.
APP_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self' {sockets}; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@require_safe
def app(request):
    """The web client: files, messages and screen sharing between browsers."""
    response = render(request, "signaling/app.html")
    # Older browsers do not let 'self' cover WebSocket URLs, so the server's
    # own ws:// and wss:// origins are named.
    host = request.get_host()
    response["Content-Security-Policy"] = APP_CONTENT_SECURITY_POLICY.format(
        sockets=f"ws://{host} wss://{host}"
    )
    return response


@require_safe
async def metrics(request):
    """Prometheus metrics of this process; off unless a token or IPs are set."""
    status = metrics_access_status(
        token=settings.SIGNALING_METRICS_TOKEN,
        allowed=settings.SIGNALING_METRICS_ALLOWED_IPS,
        authorization=request.headers.get("Authorization"),
        # Under ASGI (Daphne) the scope carries the socket peer.
        address=client_address(getattr(request, "scope", {})),
    )
    if status == 404:
        raise Http404
    if status == 401:
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if status == 403:
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    # Readiness at scrape time, with less time than a scrape's timeout.
    metrics_readiness_observed(await readiness(METRICS_READINESS_TIMEOUT_SECONDS))
    # The classic text format unless the scraper asks for OpenMetrics.
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(REGISTRY), content_type=content_type)


# The PeerJS server's HTTP API (peerjs-server's src/api/v1/public), mounted
# at SIGNALING_PEERJS_PATH + SIGNALING_PEERJS_KEY by signaling/urls.py.


def _peerjs_cors(response: HttpResponse) -> HttpResponse:
    # As peerjs-server (the cors package's defaults): PeerJS apps usually
    # run on another origin than their signaling server.
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Allow-Methods"] = "GET,HEAD,OPTIONS"
    response["Cache-Control"] = "no-store"
    return response


def _peerjs_preflight(request) -> HttpResponse | None:
    if request.method == "OPTIONS":
        response = _peerjs_cors(HttpResponse(status=204))
        response["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", ""
        )
        return response
    if request.method not in ("GET", "HEAD"):
        return _peerjs_cors(HttpResponse(status=405))
    return None


# peerjs-server's answer at its mount path (its src/app.json), which some
# deployments poll to see that a PeerJS server is there.
PEERJS_ABOUT = {
    "name": "PeerJS Server",
    "description": "A server side element to broker connections between PeerJS clients.",
    "website": "https://peerjs.com/",
}


def peerjs_about(request):
    """What peerjs-server says about itself at GET {path}."""
    return _peerjs_preflight(request) or _peerjs_cors(JsonResponse(PEERJS_ABOUT))


def peerjs_id(request):
    """A fresh random id for a Peer created without one."""
    return _peerjs_preflight(request) or _peerjs_cors(
        HttpResponse(str(uuid.uuid4()), content_type="text/html; charset=utf-8")
    )


async def peerjs_peers(request):
    """Every connected PeerJS id, when discovery is on; else 401."""
    refused = _peerjs_preflight(request)
    if refused is not None:
        return refused
    if not settings.SIGNALING_PEERJS_DISCOVERY:
        return _peerjs_cors(HttpResponse(status=401))
    return _peerjs_cors(JsonResponse(await peerjs_ids(), safe=False))
