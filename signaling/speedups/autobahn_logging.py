"""Autobahn's debug-only formatting skipped when its debug lines are off.

Upstream: autobahn 26.11.1 (``autobahn/websocket/protocol.py``,
``autobahn/twisted/websocket.py``).
Touches: the module-level helpers ``pformat``, ``hltype`` and ``hlval`` of
both modules, replaced by a function returning "".

Autobahn pretty-prints its whole configuration and transport details on
every connection, and highlights names for every frame it sends, for debug
log lines that are then discarded. Applied only when Daphne's debug logging
is off (``daphne -v 2`` keeps Autobahn's formatting).
"""

from __future__ import annotations

import logging
import sys

UPSTREAM = {"autobahn": "26.11.1"}
TOUCHES = (
    "autobahn.websocket.protocol.pformat",
    "autobahn.websocket.protocol.hltype",
    "autobahn.websocket.protocol.hlval",
    "autobahn.twisted.websocket.pformat",
    "autobahn.twisted.websocket.hltype",
    "autobahn.twisted.websocket.hlval",
)


def apply() -> None:
    if logging.getLogger("daphne").isEnabledFor(logging.DEBUG):
        return
    for name in ("autobahn.websocket.protocol", "autobahn.twisted.websocket"):
        module = sys.modules.get(name)
        for helper in ("pformat", "hltype", "hlval"):
            if module is not None and hasattr(module, helper):
                setattr(module, helper, _unformatted)


def _unformatted(value, *args, **kwargs) -> str:
    return ""
