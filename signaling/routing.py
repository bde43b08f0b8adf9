from django.urls import path

from .consumers import SignalingConsumer

# The Android app connects to the bare host; /ws/ is an alias for browsers
# behind proxies that route by path.
websocket_urlpatterns = [
    path("", SignalingConsumer.as_asgi()),
    path("ws/", SignalingConsumer.as_asgi()),
]
