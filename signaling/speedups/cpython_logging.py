"""Cheaper log records, and log lines written once per event-loop turn.

Upstream: CPython 3.11's logging module (interpreter globals).
Touches: ``logging._srcfile``, ``logging.logThreads``,
``logging.logProcesses``, ``logging.logMultiprocessing``; and the console
handler settings.LOGGING names, whose batching ``apply()`` turns on (until
then it is ``logging.StreamHandler``, line for line).

Records: every log record looks up the caller's file and line (a stack
walk), the thread, the process and its multiprocessing name; no format here
shows them. The logging HOWTO's "Optimization" section names these
switches. A custom LOGGING format using %(lineno)d, %(thread)d or
%(process)d would show placeholders.

Lines: Python's stderr writes each line with its own system call (it is
line buffered, or unbuffered under PYTHONUNBUFFERED), while the event loop
handles dozens of connections per turn. Here a line logged from the event
loop's thread is formatted at once and kept until the end of the current
loop turn, when all the turn's lines are written together; lines from
other threads, or with no loop running, are written at once as before.
Nothing is reordered within a thread, and ``flush()`` (called by
``logging.shutdown`` at exit) writes what is held. A process killed
outright loses at most the lines of the turn it was in.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import traceback

UPSTREAM = {"python": "3.11"}
TOUCHES = (
    "logging._srcfile",
    "logging.logThreads",
    "logging.logProcesses",
    "logging.logMultiprocessing",
)


def apply() -> None:
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    LoopBatchedStreamHandler.batching = True


class LoopBatchedStreamHandler(logging.StreamHandler):
    """logging.StreamHandler writing each event-loop turn's lines at once
    (once ``batching`` is on)."""

    # Off: exactly logging.StreamHandler. apply() turns it on for all.
    batching = False

    def __init__(self, stream=None, *, batching: bool | None = None) -> None:
        super().__init__(stream)
        if batching is not None:
            self.batching = batching
        self._held: list[str] = []
        # The loop that will write what is held (tests run several loops;
        # one may close before its turn ends).
        self._writer_loop: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        loop = asyncio._get_running_loop() if self.batching else None
        if loop is None:
            super().emit(record)
            return
        try:
            line = self.format(record) + self.terminator
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
            return
        # handle() holds the handler's lock here.
        if not self._held or self._writer_loop is not loop:
            self._writer_loop = loop
            loop.call_soon(self._flush_after_turn)
        self._held.append(line)

    def flush(self) -> None:
        self.acquire()
        try:
            if self._held:
                text = "".join(self._held)
                self._held.clear()
                self.stream.write(text)
            super().flush()
        finally:
            self.release()

    def _flush_after_turn(self) -> None:
        try:
            self.flush()
        except Exception:
            # As Handler.handleError: say so on stderr, never raise into
            # the event loop (whose error report would be logged here too).
            if logging.raiseExceptions and sys.stderr:
                traceback.print_exc(file=sys.stderr)
