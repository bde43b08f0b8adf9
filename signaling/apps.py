from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class SignalingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "signaling"
    verbose_name = "Signaling"

    def ready(self):
        # Refuse to start with settings that would fail at the first sign-in.
        from django.conf import settings

        from .ice import IceConfig

        try:
            IceConfig.from_settings(settings)
        except ValueError as error:
            raise ImproperlyConfigured(f"ICE servers: {error}") from None
