from django.conf import settings
from django.db import models


class ServerProcess(models.Model):
    """A Daphne process serving signaling sockets; it heartbeats while alive."""

    name = models.CharField(max_length=200, primary_key=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_heartbeat = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class LiveSession(models.Model):
    """A live signed-in connection; the row goes when the connection ends."""

    # A name is live on at most one connection.
    username = models.CharField(max_length=64, unique=True)
    channel_name = models.CharField(max_length=200, unique=True)
    process = models.ForeignKey(
        ServerProcess, on_delete=models.CASCADE, related_name="sessions"
    )
    client_address = models.CharField(max_length=45, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    account = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="live_sessions",
    )
    connected_at = models.DateTimeField(db_index=True)
    # When the serving process last vouched that the connection is open.
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["-connected_at"]

    def __str__(self):
        return self.username
