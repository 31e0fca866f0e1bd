"""`up --datastore` against a real MariaDB and a real PostgreSQL that the test starts."""

from __future__ import annotations

import pytest

from spire_fabric.testing import short_tempdir

from .conftest import Deploy, free_port_base

SERVERS = ("spire-upstream-server", "spire-downstream-server")


def _databases_for(db, prefix: str) -> None:
    for server in SERVERS:
        db.create_database(f"{prefix}_{server.replace('-', '_')}")


@pytest.mark.parametrize("engine", ["mariadb", "postgres"])
def test_enterprise_runs_and_verifies_on_an_external_sql_datastore(engine, request) -> None:
    db = request.getfixturevalue(f"{engine}_server")
    prefix = f"sf_e2e_{engine}"
    _databases_for(db, prefix)
    db.create_user(f"{prefix}_user", "s3cret-pw", databases=[
        f"{prefix}_{s.replace('-', '_')}" for s in SERVERS
    ])  # fmt: skip
    # `{server}` is replaced per server: two SPIRE servers never share a database
    url = db.url(f"{prefix}_{{server}}", f"{prefix}_user", "s3cret-pw")
    deploy = Deploy(short_tempdir(f"sf-e2e-{engine}-") / "state", free_port_base())
    try:
        result = deploy.up("--datastore", url)
        assert "passed, 0 failed" in result.stdout, result.stdout
        report = deploy.verify()
        kind = {"mariadb": "MySql", "postgres": "Postgres"}[engine]
        for server in SERVERS:
            assert report.get(f"datastore:{server}").detail.startswith(kind)
        # the database itself as the oracle: SPIRE's tables hold our entries
        d = deploy.deployment()
        for server in SERVERS:
            expected = len(d.desired_entries(server))
            rows = db.query(
                "SELECT COUNT(*) FROM registered_entries WHERE entry_id LIKE 'spire-fabric-%'",
                f"{prefix}_{server.replace('-', '_')}",
            )
            assert int(rows[-1][0]) == expected, (server, rows)
        assert "s3cret-pw" not in result.stdout + result.stderr  # never printed
    finally:
        deploy.run("down", "--purge")
