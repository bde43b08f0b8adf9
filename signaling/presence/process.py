"""This server process's identity, shared by presence and session records."""

import os
import secrets
import socket

from django.utils import timezone

# host:pid:random; the random part tells a restarted process with a reused
# pid from its predecessor.
PROCESS_NAME = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
PROCESS_STARTED_AT = timezone.now()
