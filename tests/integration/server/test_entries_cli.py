"""`python -m spire_fabric.entries ...` as a user runs it, against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spire_fabric.testing import SpireServerProcess

from .conftest import cli_json

pytestmark = pytest.mark.integration

PARENT = "spiffe://example.org/spire/agent/join_token/parent"

FILE = f"""\
owner: payments
defaults:
  parent_id: {PARENT}
entries:
  - spiffe_id: spiffe://example.org/payments/api
    selectors: [unix:uid:1000]
    x509_svid_ttl: 1h
    dns_names: [api.payments.svc]
    hint: internal
  - spiffe_id: spiffe://example.org/payments/worker
    selectors: [unix:uid:1001]
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spire_fabric.entries", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def entries_file(tmp_path: Path) -> Path:
    path = tmp_path / "entries.yaml"
    path.write_text(FILE)
    return path


def cli_entries(server: SpireServerProcess) -> list[dict]:
    return cli_json(server, "entry", "show")["entries"]


def test_diff_apply_diff_list_round_trip(spire_server: SpireServerProcess, entries_file: Path):
    sock = str(spire_server.socket_path)

    diff = run("diff", "-f", str(entries_file), "--socket", sock, "--output", "json")
    assert diff.returncode == 0, diff.stderr
    planned = json.loads(diff.stdout)
    assert planned["dry_run"] is True
    assert sorted((c["action"], c["spiffe_id"]) for c in planned["changes"]) == [
        ("create", "spiffe://example.org/payments/api"),
        ("create", "spiffe://example.org/payments/worker"),
    ]
    assert cli_entries(spire_server) == []  # diff changed nothing

    apply = run("apply", "-f", str(entries_file), "--socket", sock)
    assert apply.returncode == 0, apply.stderr
    assert "2 created, 0 updated, 0 deleted" in apply.stdout
    stored = cli_entries(spire_server)
    assert sorted(e["spiffe_id"]["path"] for e in stored) == ["/payments/api", "/payments/worker"]
    assert all(e["id"].startswith("payments.") for e in stored)
    api = next(e for e in stored if e["spiffe_id"]["path"] == "/payments/api")
    assert (api["x509_svid_ttl"], api["hint"], api["dns_names"]) == (
        3600,
        "internal",
        ["api.payments.svc"],
    )

    again = run("diff", "-f", str(entries_file), "--socket", sock)
    assert again.returncode == 0
    assert "no changes" in again.stdout

    listed = run("list", "--owner", "payments", "--socket", sock, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(e["id"] for e in json.loads(listed.stdout)["entries"]) == sorted(
        e["id"] for e in stored
    )
    table = run("list", "-f", str(entries_file), "--socket", sock)
    assert table.returncode == 0
    assert "2 entries" in table.stdout
    assert "/payments/worker" in table.stdout


def test_edited_file_shows_update_and_delete_and_apply_leaves_cli_entries_alone(
    spire_server: SpireServerProcess, entries_file: Path
):
    sock = str(spire_server.socket_path)
    foreign = spire_server.create_entry("spiffe://example.org/legacy", PARENT, ["unix:uid:7"])
    assert run("apply", "-f", str(entries_file), "--socket", sock).returncode == 0
    without_worker = FILE.split("  - spiffe_id: spiffe://example.org/payments/worker")[0]
    entries_file.write_text(without_worker.replace("x509_svid_ttl: 1h", "x509_svid_ttl: 2h"))

    diff = run("diff", "-f", str(entries_file), "--socket", sock, "-o", "json")
    changes = {c["action"]: c for c in json.loads(diff.stdout)["changes"]}
    assert set(changes) == {"update", "delete"}
    assert changes["update"]["fields"] == ["x509_svid_ttl"]
    assert changes["delete"]["spiffe_id"] == "spiffe://example.org/payments/worker"

    apply = run("apply", "-f", str(entries_file), "--socket", sock)
    assert apply.returncode == 0, apply.stderr
    assert "0 created, 1 updated, 1 deleted" in apply.stdout
    by_path = {e["spiffe_id"]["path"]: e for e in cli_entries(spire_server)}
    assert set(by_path) == {"/payments/api", "/legacy"}
    assert by_path["/payments/api"]["x509_svid_ttl"] == 7200
    assert by_path["/legacy"]["id"] == foreign


def test_malformed_file_exits_2_naming_the_field_before_any_connection(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        textwrap.dedent(
            f"""\
            owner: payments
            entries:
              - spiffe_id: spiffe://example.org/a
                parent_id: {PARENT}
                selectors: [unix:uid:1]
              - spiffe_id: spiffe://example.org/b
                parent_id: {PARENT}
                selectors: [unix:uid:2, "uid-3"]
            """
        )
    )
    # The socket does not exist: a connection attempt would fail differently (exit 1).
    result = run("apply", "-f", str(bad), "--socket", str(tmp_path / "no" / "api.sock"))
    assert result.returncode == 2
    assert "entries[1].selectors[1]" in result.stderr
    assert "bad.yaml" in result.stderr
    assert result.stdout == ""


def test_unreachable_server_exits_1_after_a_good_file(tmp_path: Path, entries_file: Path):
    result = run("diff", "-f", str(entries_file), "--socket", str(tmp_path / "api.sock"))
    assert result.returncode == 1
    assert "no SPIRE server API socket" in result.stderr


def test_owner_flag_that_contradicts_the_file_is_refused(tmp_path: Path, entries_file: Path):
    result = run("apply", "-f", str(entries_file), "--owner", "ops", "--socket", "/nonexistent")
    assert result.returncode == 2
    assert "'ops' differs from the owner 'payments'" in result.stderr


def test_help_documents_the_file_format_and_exit_codes():
    result = run("apply", "--help")
    assert result.returncode == 0
    for words in ("owner: payments", "selectors: [unix:uid:1000]", "exit codes", "no changes"):
        assert words in result.stdout


def test_apply_exits_1_and_names_the_item_spire_refused(
    spire_server: SpireServerProcess, entries_file: Path
):
    # A CLI-made entry with exactly the worker's shape: SPIRE refuses a second one.
    spire_server.create_entry("spiffe://example.org/payments/worker", PARENT, ["unix:uid:1001"])
    result = run("apply", "-f", str(entries_file), "--socket", str(spire_server.socket_path))
    assert result.returncode == 1
    assert "ALREADY_EXISTS" in result.stdout
    assert "1 created, 0 updated, 0 deleted, 0 unchanged, 1 failed" in result.stdout
