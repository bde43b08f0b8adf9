from django.contrib import admin
from django.utils import timezone
from django.utils.timesince import timesince

from signaling.core.protocol import reserved_name
from signaling.models import LiveSession
from signaling.presence.live_sessions import live_sessions_disconnect

DISCONNECT_REASON = "Disconnected by an administrator"


class GuestOrAccountFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [("guest", "Guest"), ("account", "Account")]

    def queryset(self, request, queryset):
        if self.value() == "guest":
            return queryset.filter(account__isnull=True)
        if self.value() == "account":
            return queryset.filter(account__isnull=False)
        return queryset


@admin.register(LiveSession)
class LiveSessionAdmin(admin.ModelAdmin):
    list_display = [
        "username",
        "protocol",
        "account",
        "client_address",
        "user_agent",
        "process",
        "connected_at",
        "connected_for",
        "last_seen",
    ]
    list_filter = ["process", GuestOrAccountFilter]
    search_fields = ["username"]
    ordering = ["-connected_at"]
    list_select_related = ["account", "process"]
    actions = ["disconnect"]

    @admin.display(description="protocol")
    def protocol(self, session):
        # PeerJS ids are claimed as "peerjs:<id>" (signaling/core/peerjs.py),
        # a prefix app usernames may not take: no column needed.
        return "PeerJS" if reserved_name(session.username) else "app"

    @admin.display(description="connected for")
    def connected_for(self, session):
        return timesince(session.connected_at, timezone.now())

    @admin.action(description="Disconnect selected sessions")
    def disconnect(self, request, queryset):
        sessions = list(queryset)
        live_sessions_disconnect(
            [session.channel_name for session in sessions], reason=DISCONNECT_REASON
        )
        for session in sessions:
            self.log_change(request, session, "Disconnected the live session")
        self.message_user(request, f"Disconnected {len(sessions)} session(s).")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
