from django.conf import settings
from django.urls import path

from signaling import views

urlpatterns = [
    path("", views.index, name="index"),
    path("livez", views.livez, name="livez"),
    # Readiness under both names: /healthz as before, /readyz beside /livez.
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.healthz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("app/", views.app, name="app"),
]

# PeerJS's HTTP API, beside its WebSocket at SIGNALING_PEERJS_PATH + "peerjs"
# (signaling/ws/routing.py).
_peerjs_api = settings.SIGNALING_PEERJS_PATH.lstrip("/") + settings.SIGNALING_PEERJS_KEY
urlpatterns += [
    path(f"{_peerjs_api}/id", views.peerjs_id, name="peerjs-id"),
    path(f"{_peerjs_api}/peers", views.peerjs_peers, name="peerjs-peers"),
]
# peerjs-server's JSON about itself, at its mount path with or without the
# slash; not at "/", which keeps the original server's answer that platform
# health checks poll.
_peerjs_mount = settings.SIGNALING_PEERJS_PATH.strip("/")
if _peerjs_mount:
    urlpatterns += [
        path(_peerjs_mount, views.peerjs_about),
        path(_peerjs_mount + "/", views.peerjs_about, name="peerjs-about"),
    ]
