"""Make a server's entries match a desired set, touching only the entries we own.

Why ownership lives in the entry ID: SPIRE lets a client choose the entry ID at creation,
IDs are visible in every tool (`spire-server entry show`), and they cannot be changed
afterwards, so `<owner>.<digest>` marks our entries without borrowing a field (like
`hint`) that workloads use for something else. The digest is derived from the SPIFFE ID
and parent ID, so the same desired entry always gets the same ID — an entry deleted
behind our back is re-created under its old name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from spire_fabric.server import Entry, EntryField, SpireApiError, SpireValidationError

if TYPE_CHECKING:
    from spire_fabric.server import AsyncSpireServerClient, SpireServerClient

__all__ = [
    "ApplyResult",
    "EntryChange",
    "EntryPlan",
    "apply_entries",
    "apply_entries_async",
    "owned_entry_id",
    "plan_entries",
]

_OWNER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Action = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class EntryChange:
    """One change `apply_entries` makes: create, update (with the fields that differ and the
    entry as SPIRE had it) or delete."""

    action: Action
    entry: Entry  # what will be (create/update) or what was (delete)
    fields: frozenset[EntryField] = frozenset()  # for updates: what differs
    previous: Entry | None = None  # for updates: the entry as SPIRE had it

    def describe(self) -> str:
        """One line for a plan: action, SPIFFE ID, and for an update the fields that change."""
        what = f"{self.entry.spiffe_id} (parent {self.entry.parent_id})"
        if self.action == "update":
            changed = ", ".join(sorted(f.value for f in self.fields))
            return f"update {what}: {changed}"
        return f"{self.action} {what}"


@dataclass(frozen=True)
class EntryPlan:
    """What `apply_entries` would do; empty when the server already matches."""

    changes: tuple[EntryChange, ...]
    unchanged: tuple[Entry, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changes)

    def of(self, action: Action) -> list[EntryChange]:
        """The changes of one action (create, update or delete)."""
        return [c for c in self.changes if c.action == action]


@dataclass(frozen=True)
class ApplyResult:
    """What `apply_entries` planned, and the changes SPIRE refused with its error for each;
    falsy failures mean the server now holds exactly the desired entries."""

    plan: EntryPlan
    failures: tuple[tuple[EntryChange, SpireApiError], ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Whether SPIRE accepted every change."""
        return not self.failures

    @property
    def created(self) -> int:
        """How many entries were created."""
        return self._done("create")

    @property
    def updated(self) -> int:
        """How many entries were updated."""
        return self._done("update")

    @property
    def deleted(self) -> int:
        """How many entries were deleted."""
        return self._done("delete")

    def _done(self, action: Action) -> int:
        failed = sum(1 for change, _ in self.failures if change.action == action)
        return len(self.plan.of(action)) - failed

    def raise_for_errors(self) -> ApplyResult:
        """Raise the first refusal (a SpireApiError naming the entry) if any; else return self."""
        if self.failures:
            change, error = self.failures[0]
            raise type(error)(
                error.code,
                f"{error.message} ({len(self.failures)} failure(s) in all)",
                operation=change.describe(),
            )
        return self


def owned_entry_id(owner: str, entry: Entry) -> str:
    """The entry ID `apply_entries` gives an entry: ``<owner>.<hash of ID and parent>``.

    Deterministic, so a re-run finds its own entries, and prefixed by ``owner``, so entries
    made by anyone else are never touched.
    """
    check_owner(owner)
    key = f"{entry.spiffe_id}|{entry.parent_id}".encode()
    return f"{owner}.{hashlib.sha256(key).hexdigest()[:40]}"


def plan_entries(current: Iterable[Entry], desired: Iterable[Entry], *, owner: str) -> EntryPlan:
    """The changes that turn `current` into `desired` for `owner`'s entries. Pure."""
    check_owner(owner)
    prefix = f"{owner}."
    owned = {e.id: e for e in current if e.id.startswith(prefix)}
    wanted: dict[str, Entry] = {}
    for entry in desired:
        entry_id = owned_entry_id(owner, entry)
        if entry_id in wanted:
            raise SpireValidationError(
                f"two desired entries have SPIFFE ID {entry.spiffe_id} and parent "
                f"{entry.parent_id}; each (SPIFFE ID, parent) pair may appear once"
            )
        if entry.id and entry.id != entry_id:
            raise SpireValidationError(
                f"desired entry {entry.spiffe_id} carries id {entry.id!r}; leave it empty, "
                "apply_entries assigns owned IDs"
            )
        wanted[entry_id] = _with_id(entry, entry_id)

    changes: list[EntryChange] = []
    unchanged: list[Entry] = []
    for entry_id, entry in sorted(wanted.items()):
        have = owned.get(entry_id)
        if have is None:
            changes.append(EntryChange("create", entry))
            continue
        differs = have.diff(entry)
        if differs:
            changes.append(EntryChange("update", entry, frozenset(differs), have))
        else:
            unchanged.append(have)
    for entry_id, have in sorted(owned.items()):
        if entry_id not in wanted:
            changes.append(EntryChange("delete", have))
    return EntryPlan(tuple(changes), tuple(unchanged))


def apply_entries(
    client: SpireServerClient,
    desired: Iterable[Entry],
    *,
    owner: str,
    dry_run: bool = False,
) -> ApplyResult:
    """Create what is missing, update what changed, delete what we own and no longer want.

    Entries of other owners (the CLI, the controller manager) are never touched. Failed
    items are reported in the result, not raised: call `raise_for_errors()` to raise.
    """
    check_owner(owner)
    plan = plan_entries(client.list_entries(id_prefix=f"{owner}."), desired, owner=owner)
    if dry_run or not plan:
        return ApplyResult(plan)
    failures: list[tuple[EntryChange, SpireApiError]] = []
    creates, updates, deletes = plan.of("create"), plan.of("update"), plan.of("delete")
    if deletes:  # first, so a re-keyed entry never collides with its old self
        deleted = client.delete_entries([c.entry.id for c in deletes])
        failures += [(deletes[i.index], i.error) for i in deleted.failed if i.error]
    if creates:
        result = client.create_entries([c.entry for c in creates])
        failures += [(creates[i.index], i.error) for i in result.failed if i.error]
    for fields, group in _by_changed_fields(updates):
        result = client.update_entries([c.entry for c in group], fields=fields)
        failures += [(group[i.index], i.error) for i in result.failed if i.error]
    return ApplyResult(plan, tuple(failures))


async def apply_entries_async(
    client: AsyncSpireServerClient,
    desired: Iterable[Entry],
    *,
    owner: str,
    dry_run: bool = False,
) -> ApplyResult:
    """`apply_entries` for `AsyncSpireServerClient`."""
    check_owner(owner)
    current = [e async for e in client.list_entries(id_prefix=f"{owner}.")]
    plan = plan_entries(current, desired, owner=owner)
    if dry_run or not plan:
        return ApplyResult(plan)
    failures: list[tuple[EntryChange, SpireApiError]] = []
    creates, updates, deletes = plan.of("create"), plan.of("update"), plan.of("delete")
    if deletes:
        deleted = await client.delete_entries([c.entry.id for c in deletes])
        failures += [(deletes[i.index], i.error) for i in deleted.failed if i.error]
    if creates:
        result = await client.create_entries([c.entry for c in creates])
        failures += [(creates[i.index], i.error) for i in result.failed if i.error]
    for fields, group in _by_changed_fields(updates):
        result = await client.update_entries([c.entry for c in group], fields=fields)
        failures += [(group[i.index], i.error) for i in result.failed if i.error]
    return ApplyResult(plan, tuple(failures))


def _with_id(entry: Entry, entry_id: str) -> Entry:
    """``replace(entry, id=entry_id)`` without running ``Entry.__post_init__`` again: the
    entry was checked when it was made and an ID needs no check. At 10k entries replace was
    a third of diffing them."""
    new = object.__new__(Entry)
    new.__dict__.update(entry.__dict__, id=entry_id)
    return new


def _by_changed_fields(
    updates: list[EntryChange],
) -> list[tuple[frozenset[EntryField], list[EntryChange]]]:
    """Updates grouped by what changed, so each batch writes only those fields (SPIRE's
    update mask) and never overwrites a concurrent edit of a field we did not change."""
    groups: dict[frozenset[EntryField], list[EntryChange]] = {}
    for change in updates:
        groups.setdefault(change.fields, []).append(change)
    return sorted(groups.items(), key=lambda item: sorted(f.value for f in item[0]))


def check_owner(owner: str) -> None:
    if not _OWNER.match(owner):
        raise SpireValidationError(
            f"owner {owner!r} must be 1-64 characters of letters, digits, '-' and '_' "
            "(it becomes the prefix of SPIRE entry IDs)"
        )
