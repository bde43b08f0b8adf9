"""ASGI entry point: ``daphne signaling_site.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signaling_site.settings")

# Set up Django before importing anything that touches models.
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402

from signaling import speedups  # noqa: E402
from signaling.ws import shutdown  # noqa: E402
from signaling.ws.origins import OriginCheckMiddleware  # noqa: E402
from signaling.ws.routing import protocol_router, websocket_application  # noqa: E402

shutdown.install()

application = protocol_router(
    http=django_asgi_app,
    websocket=OriginCheckMiddleware(websocket_application),
)

# Only in a Daphne server process, as SIGNALING_SPEEDUPS says (on, off,
# require); see signaling/speedups/__init__.py.
speedups.install(settings.SIGNALING_SPEEDUPS)
