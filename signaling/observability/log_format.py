"""One JSON object per log line (``SIGNALING_LOG_FORMAT=json``).

Named so as not to shadow the standard library's ``logging``. Log
aggregators (Render's log streams, Loki, CloudWatch) parse such lines without
patterns. The message is the same text the plain format shows; what it may
contain is decided where it is logged (never passwords; SDP and candidates
only at DEBUG).
"""

from __future__ import annotations

import datetime
import json
import logging

# Attributes every LogRecord has; anything else came from ``extra=`` and is
# written as a structured field.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__
) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Format a record as ``{"timestamp", "level", "logger", "message", ...}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": datetime.datetime.fromtimestamp(
                record.created, tz=datetime.UTC
            ).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # ASCII output: a lone surrogate in a message cannot break the stream;
        # default=str: an extra field that is not JSON still logs.
        return json.dumps(entry, default=str)
