from django.apps import AppConfig


class SignalingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "signaling"
    verbose_name = "Signaling"

    def ready(self):
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save

        from .accounts import account_names

        user_model = get_user_model()
        post_save.connect(account_names.invalidate, sender=user_model, weak=False)
        post_delete.connect(account_names.invalidate, sender=user_model, weak=False)
