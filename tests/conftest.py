import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from signaling.presence import registry
from tests.servers import DaphneServer, base_environment, migrate, sqlite_copy


@pytest.fixture(autouse=True)
def fresh_signaling_state():
    """Each test starts with nobody online and an empty in-memory layer."""
    registry.clear()
    async_to_sync(get_channel_layer().flush)()
    yield
    registry.clear()
    async_to_sync(get_channel_layer().flush)()


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

    def start(*, database_url: str | None = None, extra_args=(), **env) -> DaphneServer:
        database_url = database_url or sqlite_copy(migrated_sqlite, tmp_path)
        server = DaphneServer(
            env=base_environment(DATABASE_URL=database_url, **env),
            log_path=tmp_path / f"daphne-{len(servers)}.log",
            extra_args=extra_args,
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server):
    return start_server()
