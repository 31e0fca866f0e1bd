"""A real spire-server on a real MariaDB and a real PostgreSQL (SPIRE's DataStore "sql").

The database itself is the oracle: after SPIRE says it stored an entry, the database CLI
must find the row in SPIRE's `registered_entries` table, and a restarted server must serve
it back. The servers come from `scripts/install-databases` and are started by the session
fixtures `mariadb_server` / `postgres_server` (which fail, never skip, without binaries).
"""

from __future__ import annotations

import json
import uuid

import pytest

from spire_fabric.testing import SpireProcessError
from spire_fabric.testing.databases import MariaDbServer, PostgresServer
from spire_fabric.testing.pytest_plugin import ServerFactory

Database = MariaDbServer | PostgresServer

WORKLOAD_ID = "spiffe://example.org/db-test/workload"
PARENT_ID = "spiffe://example.org/db-test/agent"


@pytest.fixture(params=["mariadb", "postgres"])
def database(request: pytest.FixtureRequest) -> Database:
    server: Database = request.getfixturevalue(f"{request.param}_server")
    return server


def _fresh_database(database: Database, password: str = "s3cret-Pw") -> tuple[str, str, str]:
    """A new database and a user with rights on it only; (database, user, password)."""
    suffix = uuid.uuid4().hex[:10]
    name = database.create_database(f"spire_{suffix}")
    user = database.create_user(f"spire_{suffix}", password, databases=[name])
    return name, user, password


def test_entry_survives_spire_server_restart_on_external_datastore(
    database: Database, spire_server_factory: ServerFactory
) -> None:
    name, user, password = _fresh_database(database)
    server = spire_server_factory(datastore=database.spire_datastore(name, user, password))

    entry_id = server.create_entry(WORKLOAD_ID, PARENT_ID, ["unix:uid:1000"])
    server.stop()
    server.start()

    shown = json.loads(server.cli("entry", "show", "-output", "json").stdout)
    entries = {e["id"]: e for e in shown["entries"]}
    assert list(entries) == [entry_id]
    assert entries[entry_id]["spiffe_id"] == {
        "trust_domain": "example.org",
        "path": "/db-test/workload",
    }
    # SPIRE wrote to the external database, not to its default SQLite file
    assert not (server.data_dir / "datastore.sqlite3").exists()
    rows = database.query("SELECT entry_id, spiffe_id FROM registered_entries", name)
    assert rows == [[entry_id, WORKLOAD_ID]]


def test_spire_server_migrates_its_schema_into_the_external_database(
    database: Database, spire_server_factory: ServerFactory
) -> None:
    name, user, password = _fresh_database(database)
    spire_server_factory(datastore=database.spire_datastore(name, user, password))

    if isinstance(database, MariaDbServer):
        sql = f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{name}'"
    else:
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    tables = {row[0] for row in database.query(sql, name)}
    assert {"registered_entries", "bundles", "attested_node_entries", "migrations"} <= tables
    assert len(database.query("SELECT version FROM migrations", name)) == 1


def test_spire_server_with_wrong_database_password_never_becomes_healthy(
    database: Database, spire_server_factory: ServerFactory
) -> None:
    name, user, _ = _fresh_database(database, password="the-right-one")
    wrong = database.spire_datastore(name, user, "not-the-password")

    with pytest.raises(SpireProcessError) as raised:
        spire_server_factory(datastore=wrong)

    message = str(raised.value)
    if isinstance(database, MariaDbServer):
        assert "Access denied for user" in message, message
    else:
        assert "password authentication failed for user" in message, message


def test_database_url_is_the_form_the_installer_accepts(database: Database) -> None:
    url = database.url("spire_upstream", "spire", "p@ss/w:rd")
    if isinstance(database, MariaDbServer):
        assert url == f"mysql://spire:p%40ss%2Fw%3Ard@127.0.0.1:{database.port}/spire_upstream"
    else:
        assert url == (
            f"postgres://spire:p%40ss%2Fw%3Ard@127.0.0.1:{database.port}/spire_upstream"
            "?sslmode=disable"
        )
