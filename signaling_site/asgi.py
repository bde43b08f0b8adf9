"""ASGI entry point: ``daphne signaling_site.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signaling_site.settings")

# Set up Django before importing anything that touches models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import WebsocketDenier  # noqa: E402
from django.urls import re_path  # noqa: E402

from signaling import server_tuning, shutdown  # noqa: E402
from signaling.origins import OriginCheckMiddleware  # noqa: E402
from signaling.routing import websocket_urlpatterns  # noqa: E402

shutdown.install()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginCheckMiddleware(
            URLRouter(
                # Any other path is refused at the handshake (HTTP 403)
                # rather than raising "No route found" inside the server.
                [*websocket_urlpatterns, re_path(r"", WebsocketDenier.as_asgi())]
            )
        ),
    }
)

server_tuning.apply()
