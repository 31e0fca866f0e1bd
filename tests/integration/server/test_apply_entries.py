"""apply_entries / apply_entries_async against a real spire-server, checked with SPIRE's CLI."""

from __future__ import annotations

from dataclasses import replace

import grpc
import pytest

from spire_fabric.entries import apply_entries, apply_entries_async, owned_entry_id
from spire_fabric.server import (
    AsyncSpireServerClient,
    Entry,
    EntryField,
    SpireServerClient,
)
from spire_fabric.testing import SpireServerProcess

from .conftest import cli_json

pytestmark = pytest.mark.integration

PARENT = "spiffe://example.org/spire/agent/join_token/parent"


def entry(path: str, *selectors: str, **kw: object) -> Entry:
    return Entry(f"spiffe://example.org{path}", PARENT, selectors or ("unix:uid:1000",), **kw)


def shown(server: SpireServerProcess) -> dict[str, dict]:
    """Every entry as `spire-server entry show -output json` reports it, by ID."""
    return {e["id"]: e for e in cli_json(server, "entry", "show")["entries"]}


def cli_count(server: SpireServerProcess) -> int:
    return cli_json(server, "entry", "count")["count"]


DESIRED = [
    entry("/api", "unix:uid:1000", x509_svid_ttl=3600, hint="api"),
    entry("/db", "unix:uid:1001", dns_names=("db.svc",)),
    entry("/web", "unix:uid:1002", "unix:gid:50", jwt_svid_ttl=300),
]


def test_apply_creates_the_entries_and_a_second_apply_changes_nothing(
    client: SpireServerClient, spire_server: SpireServerProcess
):
    first = apply_entries(client, DESIRED, owner="pay").raise_for_errors()
    assert (first.created, first.updated, first.deleted) == (3, 0, 0)
    on_server = shown(spire_server)
    for wanted in DESIRED:
        cli = on_server[owned_entry_id("pay", wanted)]
        assert cli["spiffe_id"]["path"] == wanted.spiffe_id.path
        assert sorted(f"{s['type']}:{s['value']}" for s in cli["selectors"]) == sorted(
            str(s) for s in wanted.selectors
        )
        assert cli.get("x509_svid_ttl", 0) == wanted.x509_svid_ttl
    revisions = {i: e.get("revision_number", 0) for i, e in on_server.items()}

    second = apply_entries(client, DESIRED, owner="pay")
    assert not second.plan
    assert (second.created, second.updated, second.deleted) == (0, 0, 0)
    assert len(second.plan.unchanged) == 3
    after = shown(spire_server)
    assert {i: e.get("revision_number", 0) for i, e in after.items()} == revisions


def test_changed_ttl_is_an_update_of_exactly_that_field(
    client: SpireServerClient, spire_server: SpireServerProcess
):
    apply_entries(client, DESIRED, owner="pay").raise_for_errors()
    before = shown(spire_server)
    changed = [replace(DESIRED[0], x509_svid_ttl=7200), *DESIRED[1:]]
    result = apply_entries(client, changed, owner="pay").raise_for_errors()
    (change,) = result.plan.changes
    assert change.action == "update"
    assert change.fields == frozenset({EntryField.X509_SVID_TTL})
    assert result.updated == 1
    after = shown(spire_server)
    entry_id = owned_entry_id("pay", DESIRED[0])
    assert after[entry_id]["x509_svid_ttl"] == 7200
    # Every other field, and every other entry, is as it was.
    ignore = {"x509_svid_ttl", "revision_number"}
    assert {k: v for k, v in after[entry_id].items() if k not in ignore} == {
        k: v for k, v in before[entry_id].items() if k not in ignore
    }
    for other in DESIRED[1:]:
        other_id = owned_entry_id("pay", other)
        assert after[other_id] == before[other_id]


def test_entry_removed_from_the_desired_set_is_deleted(
    client: SpireServerClient, spire_server: SpireServerProcess
):
    apply_entries(client, DESIRED, owner="pay").raise_for_errors()
    result = apply_entries(client, DESIRED[:2], owner="pay").raise_for_errors()
    assert result.deleted == 1
    assert [c.entry.spiffe_id for c in result.plan.of("delete")] == [DESIRED[2].spiffe_id]
    remaining = shown(spire_server)
    assert owned_entry_id("pay", DESIRED[2]) not in remaining
    assert set(remaining) == {owned_entry_id("pay", e) for e in DESIRED[:2]}


def test_entries_made_with_spire_cli_or_by_another_owner_are_left_untouched(
    client: SpireServerClient, spire_server: SpireServerProcess
):
    api = DESIRED[0]
    # Same SPIFFE ID, parent and selectors as a desired entry, made with SPIRE's CLI.
    twin = spire_server.create_entry(str(api.spiffe_id), PARENT, ["unix:uid:1000"])
    # Same SPIFFE ID and parent, other selectors and TTL.
    cousin = spire_server.create_entry(
        str(api.spiffe_id), PARENT, ["unix:uid:4242"], x509_svid_ttl=60
    )
    # Another owner's entry for the same SPIFFE ID and parent as our /db.
    others = [replace(DESIRED[1], selectors=("unix:uid:5555",))]
    apply_entries(client, others, owner="other").raise_for_errors()
    foreign_before = shown(spire_server)
    # id_prefix (which SPIRE cannot filter on) keeps exactly one owner's entries, as listed
    everything = {e.id: e for e in client.list_entries()}
    (other_id,) = [i for i in everything if i.startswith("other.")]
    assert len(everything) == 3 and other_id == owned_entry_id("other", others[0])
    assert list(client.list_entries(id_prefix="other.")) == [everything[other_id]]
    assert list(client.list_entries(id_prefix="pay.")) == []

    result = apply_entries(client, DESIRED, owner="pay")
    # SPIRE refuses a second entry with the twin's exact shape: reported, not raised.
    assert [(c.entry.spiffe_id, e.code) for c, e in result.failures] == [
        (api.spiffe_id, grpc.StatusCode.ALREADY_EXISTS)
    ]
    assert result.created == 2
    apply_entries(client, [], owner="pay").raise_for_errors()  # delete all we own

    after = shown(spire_server)
    assert set(after) == set(foreign_before)
    for entry_id in (twin, cousin, owned_entry_id("other", others[0])):
        assert after[entry_id] == foreign_before[entry_id]


def test_large_set_is_applied_in_chunks_and_then_removed(
    client: SpireServerClient, spire_server: SpireServerProcess
):
    many = [entry(f"/bulk/{i}", f"unix:uid:{10000 + i}") for i in range(1500)]
    created = apply_entries(client, many, owner="bulk").raise_for_errors()
    assert created.created == 1500
    assert cli_count(spire_server) == 1500
    assert not apply_entries(client, many, owner="bulk").plan
    removed = apply_entries(client, many[:100], owner="bulk").raise_for_errors()
    assert removed.deleted == 1400
    assert cli_count(spire_server) == 100


async def test_async_apply_creates_updates_deletes_and_then_is_idempotent(
    aclient: AsyncSpireServerClient, spire_server: SpireServerProcess
):
    first = (await apply_entries_async(aclient, DESIRED, owner="pay")).raise_for_errors()
    assert first.created == 3
    assert not (await apply_entries_async(aclient, DESIRED, owner="pay")).plan
    changed = [replace(DESIRED[1], hint="db"), DESIRED[2]]
    result = (await apply_entries_async(aclient, changed, owner="pay")).raise_for_errors()
    assert (result.created, result.updated, result.deleted) == (0, 1, 1)
    assert result.plan.of("update")[0].fields == frozenset({EntryField.HINT})
    on_server = shown(spire_server)
    assert on_server[owned_entry_id("pay", DESIRED[1])]["hint"] == "db"
    assert owned_entry_id("pay", DESIRED[0]) not in on_server


async def test_async_dry_run_plans_without_changing_anything(
    aclient: AsyncSpireServerClient, spire_server: SpireServerProcess
):
    result = await apply_entries_async(aclient, DESIRED, owner="pay", dry_run=True)
    assert len(result.plan.of("create")) == 3
    assert cli_count(spire_server) == 0
