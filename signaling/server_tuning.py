"""Process-wide tuning applied once the application is loaded.

Measured with bench/ (see the README's performance section).
"""

from __future__ import annotations

import gc
import logging
import sys


def apply() -> None:
    _quiet_autobahn_debug_formatting()
    _tune_garbage_collector()


def _quiet_autobahn_debug_formatting() -> None:
    # Autobahn pretty-prints its whole configuration and transport details
    # on every connection for debug log lines that are then discarded: 12 %
    # of the event loop in a sign-in storm. Only under Daphne, and only when
    # Twisted's debug logging is off.
    protocol = sys.modules.get("autobahn.websocket.protocol")
    if protocol is None or logging.getLogger("daphne").isEnabledFor(logging.DEBUG):
        return
    protocol.pformat = lambda value, *args, **kwargs: ""


def _tune_garbage_collector() -> None:
    # Everything loaded so far (Django, the app) lives for the process's
    # lifetime: keep the collector from walking it again and again, and
    # collect the young generation less often (each connection allocates
    # many small long-lived objects).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
