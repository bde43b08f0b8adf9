"""Database records of live sessions, for the admin, and their housekeeping.

Rows are written at sign-in and deleted when the connection ends. A process
that dies cannot delete its rows, so every process heartbeats and sweeps the
rows of processes whose heartbeat stopped.
"""

from __future__ import annotations

import asyncio
import datetime
import logging

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from signaling.core import protocol
from signaling.models import LiveSession, ServerProcess
from signaling.presence.process import PROCESS_NAME, PROCESS_STARTED_AT
from signaling.presence.registry import LocalSession, registry

logger = logging.getLogger(__name__)

# How often the sessions' "last seen" is rewritten.
LAST_SEEN_EVERY_SECONDS = 60


def _from_epoch(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)


def _process_beat(now: datetime.datetime) -> bool:
    """Record this process as alive; return True if its row was missing."""
    updated = ServerProcess.objects.filter(name=PROCESS_NAME).update(last_heartbeat=now)
    if updated:
        return False
    host, pid = PROCESS_NAME.split(":")[:2]
    ServerProcess.objects.update_or_create(
        name=PROCESS_NAME,
        defaults={
            "host": host,
            "pid": int(pid),
            "started_at": PROCESS_STARTED_AT,
            "last_heartbeat": now,
        },
    )
    return True


class _PendingWrites:
    """Session rows to write and delete, batched off the sign-in path.

    One transaction every SIGNALING_SESSION_WRITE_SECONDS instead of one per
    sign-in and sign-out: a sign-in storm no longer queues behind the
    database, and a connection that comes and goes within one interval
    costs no write at all.
    """

    def __init__(self) -> None:
        self.starts: dict[str, LocalSession] = {}
        self.ends: set[str] = set()

    def take(self) -> tuple[list[LocalSession], list[str]]:
        starts, ends = list(self.starts.values()), list(self.ends)
        self.starts, self.ends = {}, set()
        return starts, ends

    def clear(self) -> None:
        self.starts.clear()
        self.ends.clear()


_pending = _PendingWrites()
_writers: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}
# SQLite allows 999 variables per statement in older builds.
DELETE_CHUNK = 500


def discard_pending_writes() -> None:
    """Forget rows not yet written (tests: another test's database)."""
    _pending.clear()


def live_session_start(session: LocalSession) -> None:
    """Record a signed-in connection (written with the next batch)."""
    _pending.starts[session.channel_name] = session
    _ensure_writer()


def live_session_end(*, channel_name: str) -> None:
    """Forget a connection's row (deleted with the next batch)."""
    if _pending.starts.pop(channel_name, None) is None:
        _pending.ends.add(channel_name)
        _ensure_writer()


# The columns a session row is written with, in the order of _row().
_ROW_FIELDS = (
    "username",
    "channel_name",
    "process",
    "client_address",
    "user_agent",
    "account",
    "connected_at",
    "last_seen",
)


def _write_sessions(sessions: list[LocalSession], now: datetime.datetime) -> None:
    """Insert or overwrite many rows at once.

    One row per name: a later session of a name overwrites the earlier
    one's row (sessions arrive here in sign-in order). On SQLite and
    PostgreSQL one prepared upsert runs for all rows: the ORM's bulk_create
    builds a model instance and adapts every field through Python first,
    which was 11 % of the server's CPU in a sign-in storm.
    """
    latest = list({session.username: session for session in sessions}.values())
    if not latest:
        return
    sql = _upsert_statement(connection)
    with transaction.atomic():
        if sql is None:
            _write_sessions_with_the_orm(latest, now)
            return
        adapt = connection.ops.adapt_datetimefield_value
        last_seen = adapt(now)
        rows = [
            (
                session.username,
                session.channel_name,
                PROCESS_NAME,
                session.client_address,
                session.user_agent,
                session.credential.account_id,
                adapt(_from_epoch(session.connected_at)),
                last_seen,
            )
            for session in latest
        ]
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)


def _upsert_statement(database) -> str | None:
    """INSERT ... ON CONFLICT (username) DO UPDATE for SQLite (>= 3.24) and
    PostgreSQL; None for other databases."""
    if database.vendor not in ("sqlite", "postgresql"):
        return None
    meta = LiveSession._meta
    quote = database.ops.quote_name
    columns = [quote(meta.get_field(name).column) for name in _ROW_FIELDS]
    username = quote(meta.get_field("username").column)
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns[1:])
    return (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({username}) DO UPDATE SET {updates}"
    )


def _write_sessions_with_the_orm(sessions: list[LocalSession], now) -> None:
    rows = [
        LiveSession(
            username=session.username,
            channel_name=session.channel_name,
            process_id=PROCESS_NAME,
            client_address=session.client_address,
            user_agent=session.user_agent,
            account_id=session.credential.account_id,
            connected_at=_from_epoch(session.connected_at),
            last_seen=now,
        )
        for session in sessions
    ]
    for first in range(0, len(rows), DELETE_CHUNK):
        LiveSession.objects.bulk_create(
            rows[first : first + DELETE_CHUNK],
            update_conflicts=True,
            unique_fields=["username"],
            update_fields=list(_ROW_FIELDS[1:]),
        )


@database_sync_to_async
def _write_batch(starts: list[LocalSession], ends: list[str]) -> None:
    now = timezone.now()
    _process_beat(now)
    for first in range(0, len(ends), DELETE_CHUNK):
        LiveSession.objects.filter(
            channel_name__in=ends[first : first + DELETE_CHUNK]
        ).delete()
    _write_sessions(starts, now)


async def _writer_loop() -> None:
    while True:
        await asyncio.sleep(settings.SIGNALING_SESSION_WRITE_SECONDS)
        starts, ends = _pending.take()
        if not starts and not ends:
            continue
        try:
            await _finish(_write_batch(starts, ends))
        except DatabaseError:
            logger.warning("could not write session rows; retrying", exc_info=True)
            for session in starts:
                _pending.starts.setdefault(session.channel_name, session)
            _pending.ends.update(ends)


def _ensure_running(
    tasks: dict[asyncio.AbstractEventLoop, asyncio.Task], loop_body
) -> None:
    """Run ``loop_body()`` as one task per event loop (tests use several
    loops), starting it again if it ended."""
    loop = asyncio.get_running_loop()
    task = tasks.get(loop)
    if task is None or task.done():
        for other in [key for key in tasks if key.is_closed()]:
            del tasks[other]
        tasks[loop] = loop.create_task(loop_body())


def _ensure_writer() -> None:
    _ensure_running(_writers, _writer_loop)


@database_sync_to_async
def live_sessions_remove_process() -> None:
    """Delete this process and its sessions (the process is stopping)."""
    _pending.clear()
    ServerProcess.objects.filter(name=PROCESS_NAME).delete()


@database_sync_to_async
def live_process_names() -> set[str]:
    """The processes whose heartbeat is recent: those serving sessions now.

    The database keeps them when Redis loses its data, so this tells which
    instances must re-claim their sessions before names count as free.
    """
    cutoff = timezone.now() - datetime.timedelta(
        seconds=settings.SIGNALING_PROCESS_STALE_SECONDS
    )
    return set(
        ServerProcess.objects.filter(last_heartbeat__gte=cutoff).values_list(
            "name", flat=True
        )
    )


def live_sessions_sweep(*, stale_after: float) -> int:
    """Delete processes (and their sessions) whose heartbeat is too old."""
    cutoff = timezone.now() - datetime.timedelta(seconds=stale_after)
    orphans, _ = LiveSession.objects.filter(process__last_heartbeat__lt=cutoff).delete()
    ServerProcess.objects.filter(last_heartbeat__lt=cutoff).delete()
    return orphans


@database_sync_to_async
def _heartbeat_once(local: list[LocalSession], *, touch_sessions: bool) -> None:
    now = timezone.now()
    if _process_beat(now):
        # The row was swept while this process was alive but silent (stopped,
        # or the database unreachable): write its sessions again.
        _write_sessions(local, now)
    if touch_sessions:
        # Rewriting every row is costly with thousands online: done once a
        # minute, while the process row says "alive" every beat.
        LiveSession.objects.filter(process_id=PROCESS_NAME).update(last_seen=now)
    live_sessions_sweep(stale_after=settings.SIGNALING_PROCESS_STALE_SECONDS)


async def _refresh_group_memberships(local: list[LocalSession]) -> None:
    # Channel layers expire group memberships (24 h by default); a connection
    # may live longer, so its membership is renewed while it lives.
    layer = get_channel_layer()
    for session in local:
        await layer.group_add(
            protocol.group_name(session.username), session.channel_name
        )


async def _heartbeat_loop() -> None:
    interval = settings.SIGNALING_HEARTBEAT_SECONDS
    refresh_every = settings.SIGNALING_GROUP_REFRESH_SECONDS
    last_refresh = last_touch = asyncio.get_running_loop().time()
    while True:
        local = registry.local_sessions()
        touch = (
            asyncio.get_running_loop().time() - last_touch >= LAST_SEEN_EVERY_SECONDS
        )
        if touch:
            last_touch = asyncio.get_running_loop().time()
        try:
            await _finish(_heartbeat_once(local, touch_sessions=touch))
        except DatabaseError:
            logger.warning("heartbeat failed: database unavailable", exc_info=True)
        now = asyncio.get_running_loop().time()
        if now - last_refresh >= refresh_every:
            last_refresh = now
            try:
                await _refresh_group_memberships(local)
            except Exception:
                logger.warning("group membership refresh failed", exc_info=True)
        await asyncio.sleep(interval)


_heartbeats: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


def ensure_heartbeat() -> None:
    """Start this process's heartbeat on the running loop, once."""
    _ensure_running(_heartbeats, _heartbeat_loop)


# Database work in progress in a thread, which cancelling its awaiter does
# not stop.
_in_flight: set[asyncio.Future] = set()


async def _finish(work) -> None:
    """Await database work so that cancelling the caller lets it complete."""
    future = asyncio.ensure_future(work)
    _in_flight.add(future)
    future.add_done_callback(_in_flight.discard)
    await asyncio.shield(future)


async def heartbeat_stop() -> None:
    """Stop this loop's heartbeat and session writer, and wait for any
    database work they started (tests: before the database is flushed)."""
    loop = asyncio.get_running_loop()
    for tasks in (_heartbeats, _writers):
        task = tasks.pop(loop, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    await asyncio.gather(*list(_in_flight), return_exceptions=True)


def live_sessions_disconnect(channel_names: list[str], *, reason: str) -> None:
    """Ask the connections on these channels to close (sync; for the admin)."""
    layer = get_channel_layer()

    async def send_all():
        for channel_name in channel_names:
            await layer.send(
                channel_name, {"type": "session.disconnect", "reason": reason}
            )

    async_to_sync(send_all)()
