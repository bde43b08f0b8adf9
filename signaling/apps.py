from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class SignalingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "signaling"
    verbose_name = "Signaling"

    def ready(self):
        # Refuse to start with settings that would fail at the first
        # sign-in or scrape.
        from django.conf import settings

        from .ice import IceConfig
        from .metrics import parse_networks

        try:
            IceConfig.from_settings(settings)
        except ValueError as error:
            raise ImproperlyConfigured(f"ICE servers: {error}") from None
        try:
            parse_networks(settings.SIGNALING_METRICS_ALLOWED_IPS)
        except ValueError as error:
            raise ImproperlyConfigured(
                f"SIGNALING_METRICS_ALLOWED_IPS: {error}"
            ) from None
