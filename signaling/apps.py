from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class SignalingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "signaling"
    verbose_name = "Signaling"

    def ready(self):
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save

        from signaling.presence.accounts import account_names

        user_model = get_user_model()
        post_save.connect(account_names.invalidate, sender=user_model, weak=False)
        post_delete.connect(account_names.invalidate, sender=user_model, weak=False)

        # Refuse to start with settings that would fail at the first
        # sign-in or scrape.
        from django.conf import settings

        from signaling.core.ice import IceConfig
        from signaling.observability.metrics import parse_networks
        from signaling.ws.connection_info import trusted_proxies

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
        try:
            trusted_proxies(settings.SIGNALING_TRUSTED_PROXIES)
        except ValueError as error:
            raise ImproperlyConfigured(
                f"SIGNALING_TRUSTED_PROXIES: {error}"
            ) from None
