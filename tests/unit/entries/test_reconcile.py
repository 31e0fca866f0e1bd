"""plan_entries: the pure part of the reconciler (no server needed)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from spire_fabric.entries import owned_entry_id, plan_entries
from spire_fabric.server import Entry, EntryField, SpireValidationError

PARENT = "spiffe://example.org/spire/agent/join_token/abc"


def entry(path: str, **kw: object) -> Entry:
    return Entry(f"spiffe://example.org{path}", PARENT, ("unix:uid:1000",), **kw)


def stored(owner: str, e: Entry, **kw: object) -> Entry:
    """The entry as the server would list it after we created it."""
    return replace(e, id=owned_entry_id(owner, e), revision_number=3, created_at=1700, **kw)


def test_missing_entries_are_planned_as_creates_with_owned_ids():
    plan = plan_entries([], [entry("/a"), entry("/b")], owner="pay")
    assert [c.action for c in plan.changes] == ["create", "create"]
    assert {c.entry.id for c in plan.changes} == {
        owned_entry_id("pay", entry("/a")),
        owned_entry_id("pay", entry("/b")),
    }
    assert all(c.entry.id.startswith("pay.") for c in plan.changes)


def test_entry_that_matches_is_unchanged_and_the_plan_is_empty():
    current = [stored("pay", entry("/a", x509_svid_ttl=60))]
    plan = plan_entries(current, [entry("/a", x509_svid_ttl=60)], owner="pay")
    assert not plan
    assert plan.changes == ()
    assert plan.unchanged == tuple(current)


def test_changed_ttl_is_an_update_of_exactly_that_field():
    current = [stored("pay", entry("/a", x509_svid_ttl=60, hint="h"))]
    plan = plan_entries(current, [entry("/a", x509_svid_ttl=120, hint="h")], owner="pay")
    (change,) = plan.changes
    assert change.action == "update"
    assert change.fields == frozenset({EntryField.X509_SVID_TTL})
    assert change.previous == current[0]
    assert change.entry.x509_svid_ttl == 120
    assert change.entry.id == current[0].id


def test_list_fields_in_another_order_are_not_a_change():
    desired = Entry(
        "spiffe://example.org/a", PARENT, ("unix:uid:1", "unix:gid:2"), dns_names=("x", "y")
    )
    current = [stored("pay", desired, dns_names=("y", "x"))]
    assert not plan_entries(current, [desired], owner="pay")


def test_owned_entry_no_longer_desired_is_deleted():
    keep, drop = entry("/keep"), entry("/drop")
    current = [stored("pay", keep), stored("pay", drop)]
    plan = plan_entries(current, [keep], owner="pay")
    (change,) = plan.changes
    assert change.action == "delete"
    assert change.entry == current[1]


def test_entries_of_other_owners_and_the_cli_never_appear_in_the_plan():
    mine = entry("/a")
    theirs = stored("other", mine)  # same shape, other owner
    cli_made = replace(mine, id="0b4a7e0c-1d7c-4b8e-9a57-7f1f0f0f0f0f")
    prefix_lookalike = replace(mine, id="payments.abc")  # "pay" must not match "payments."
    plan = plan_entries([theirs, cli_made, prefix_lookalike], [], owner="pay")
    assert plan.changes == ()
    plan = plan_entries([theirs, cli_made, prefix_lookalike], [mine], owner="pay")
    assert [(c.action, c.entry.id) for c in plan.changes] == [
        ("create", owned_entry_id("pay", mine))
    ]


def test_two_desired_entries_with_the_same_spiffe_id_and_parent_are_rejected():
    with pytest.raises(SpireValidationError, match="may appear once"):
        plan_entries([], [entry("/a", hint="x"), entry("/a", hint="y")], owner="pay")


def test_same_spiffe_id_under_two_parents_is_two_entries():
    a = entry("/a")
    b = Entry(a.spiffe_id, "spiffe://example.org/other-parent", a.selectors)
    plan = plan_entries([], [a, b], owner="pay")
    assert len({c.entry.id for c in plan.changes}) == 2


@pytest.mark.parametrize("owner", ["", "has space", "dots.not.allowed", "x" * 65, "ünï"])
def test_bad_owner_is_rejected(owner):
    with pytest.raises(SpireValidationError, match="owner"):
        plan_entries([], [entry("/a")], owner=owner)


def test_desired_entry_with_a_foreign_id_is_rejected():
    with pytest.raises(SpireValidationError, match="leave it empty"):
        plan_entries([], [replace(entry("/a"), id="chosen")], owner="pay")


def test_owned_id_is_stable_and_depends_on_spiffe_id_and_parent_only():
    a = entry("/a")
    assert owned_entry_id("pay", a) == owned_entry_id("pay", entry("/a", x509_svid_ttl=5))
    assert owned_entry_id("pay", a) != owned_entry_id("pay", entry("/b"))
    assert owned_entry_id("pay", a) != owned_entry_id("ops", a)


def test_updates_are_grouped_so_each_write_masks_only_the_fields_that_changed():
    from spire_fabric.entries._reconcile import _by_changed_fields

    current = [
        stored("pay", entry("/a", x509_svid_ttl=60)),
        stored("pay", entry("/b", hint="old")),
        stored("pay", entry("/c", x509_svid_ttl=60)),
    ]
    desired = [entry("/a", x509_svid_ttl=120), entry("/b", hint="new"), entry("/c")]
    groups = _by_changed_fields(plan_entries(current, desired, owner="pay").of("update"))
    assert [(sorted(f.value for f in fields), sorted(str(c.entry.spiffe_id) for c in group))
            for fields, group in groups] == [
        (["hint"], ["spiffe://example.org/b"]),
        (["x509_svid_ttl"], ["spiffe://example.org/a", "spiffe://example.org/c"]),
    ]  # fmt: skip


def test_planned_entries_are_the_desired_ones_with_their_owned_id_and_nothing_else() -> None:
    desired = Entry(
        "spiffe://example.org/web", PARENT, ["unix:uid:1000", "unix:gid:5"],
        x509_svid_ttl=60, dns_names=("b.example.org", "a.example.org"), hint="h",
    )  # fmt: skip
    (change,) = plan_entries([], [desired], owner="team").changes
    assert change.entry == replace(desired, id=owned_entry_id("team", desired))
    assert desired.id == ""  # the desired entry itself is left as it was
