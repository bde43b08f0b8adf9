from django.conf import settings
from django.core.management.base import BaseCommand

from signaling.presence.live_sessions import live_sessions_sweep


class Command(BaseCommand):
    help = (
        "Delete live sessions of server processes that stopped heartbeating. "
        "Safe to run from cron at any time, on any machine."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--stale-after",
            type=float,
            default=settings.SIGNALING_PROCESS_STALE_SECONDS,
            help="seconds without a heartbeat after which a process is dead",
        )

    def handle(self, *args, stale_after, **options):
        swept = live_sessions_sweep(stale_after=stale_after)
        self.stdout.write(f"Swept {swept} session(s) of dead processes.")
