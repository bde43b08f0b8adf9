import os

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from hypothesis import settings as hypothesis_settings

from signaling.presence import live_sessions
from signaling.presence.live_sessions import heartbeat_stop
from signaling.presence.registry import registry
from signaling.ws import guards
from tests.redis_server import RedisServer
from tests.servers import DaphneServer, base_environment, migrate, sqlite_copy
from tests.turn_server import TurnServer

# Property tests have no per-example deadline: on a loaded 2-core machine
# the default 200 ms fails examples for being slow, not wrong.
hypothesis_settings.register_profile("signaling", deadline=None)
hypothesis_settings.load_profile("signaling")


@pytest.fixture(autouse=True)
def fresh_signaling_state():
    """Each test starts with nobody online and an empty in-memory layer."""
    registry.clear()
    guards.reset()
    live_sessions.discard_pending_writes()
    async_to_sync(get_channel_layer().flush)()
    yield
    registry.clear()
    guards.reset()
    live_sessions.discard_pending_writes()
    async_to_sync(get_channel_layer().flush)()


@pytest.fixture
async def background_tasks_stopped():
    """After a test that ran consumers in process: stop the heartbeat and the
    session writer, and let their database work finish before the test
    database is flushed (else SQLite reports a locked table)."""
    yield
    await heartbeat_stop()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory):
    """A migrated SQLite file that end-to-end servers copy."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def start_server(migrated_sqlite, tmp_path):
    """Start real Daphne processes; each is stopped after the test."""
    servers: list[DaphneServer] = []

    def start(
        *, database_url: str | None = None, extra_args=(), launcher=None, **env
    ) -> DaphneServer:
        database_url = database_url or sqlite_copy(migrated_sqlite, tmp_path)
        server = DaphneServer(
            env=base_environment(DATABASE_URL=database_url, **env),
            log_path=tmp_path / f"daphne-{len(servers)}.log",
            extra_args=extra_args,
            **({"launcher": launcher} if launcher else {}),
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server):
    return start_server()


@pytest.fixture
def redis_server(tmp_path):
    """A throwaway Redis this test may stop and restart."""
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def turn_server(tmp_path):
    """A real coturn accepting TURN REST credentials made with its secret.

    Fails (never skips) when coturn is not installed.
    """
    server = TurnServer(tmp_path, secret="turn-test-secret-0123456789")
    yield server
    server.stop()


# Written into an external REDIS_URL's database while this suite uses it:
# the proof that the database is the suite's to flush.
OWNED_MARKER = "signaling-tests:owned"


def flush_external_redis(url: str) -> None:
    """Empty the database REDIS_URL names, which must be dedicated to tests.

    Tests assert exact key counts, so keys left by an earlier test or run
    would fail or, worse, pass them by accident. The database is flushed
    only if it is empty or holds this suite's marker; a database holding
    anything else is refused, never flushed.
    """
    import redis

    client = redis.Redis.from_url(url)
    try:
        if client.dbsize() and not client.exists(OWNED_MARKER):
            pytest.fail(
                f"REDIS_URL {url} holds keys this test suite did not write; "
                "point it at an empty database index dedicated to the tests "
                "(e.g. redis://host:6379/15): the suite flushes it before "
                "each test that uses it"
            )
        client.flushdb()
        client.set(OWNED_MARKER, 1)
    finally:
        client.close()


@pytest.fixture
def redis_url(request, tmp_path):
    """The Redis at REDIS_URL when set (flushed first: see
    flush_external_redis), else a throwaway one."""
    url = os.environ.get("REDIS_URL")
    if url:
        flush_external_redis(url)
        yield url
        return
    server = RedisServer(tmp_path)
    yield server.url
    server.stop()


@pytest.fixture
def instances(start_server, redis_url, shared_database_url):
    """Start real Daphne instances sharing one Redis and one database:
    ``a, b = instances()``, or ``instances(3, SIGNALING_X="1")``."""

    def start(count=2, **env):
        return [
            start_server(database_url=shared_database_url, REDIS_URL=redis_url, **env)
            for _ in range(count)
        ]

    return start


@pytest.fixture(scope="session")
def shared_database_url(tmp_path_factory, migrated_sqlite):
    """A database several instances share: PostgreSQL when DATABASE_URL
    points at one (as in CI), else a SQLite file."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        yield sqlite_copy(migrated_sqlite, tmp_path_factory.mktemp("shared"))
        return
    import psycopg

    name = f"signaling_e2e_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    shared = url.rsplit("/", 1)[0] + "/" + name
    migrate(shared)
    yield shared
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
