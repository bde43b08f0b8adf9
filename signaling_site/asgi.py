"""ASGI entry point: ``daphne signaling_site.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signaling_site.settings")

# Set up Django before importing anything that touches models.
django_asgi_app = get_asgi_application()

from signaling.speedups import daphne_server as server_tuning  # noqa: E402
from signaling.ws import shutdown  # noqa: E402
from signaling.ws.origins import OriginCheckMiddleware  # noqa: E402
from signaling.ws.routing import protocol_router, websocket_application  # noqa: E402

shutdown.install()

application = protocol_router(
    http=django_asgi_app,
    websocket=OriginCheckMiddleware(websocket_application),
)

server_tuning.apply()
