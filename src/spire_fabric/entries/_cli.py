"""`python -m spire_fabric.entries apply|diff|list`: registration from YAML files.

Thin on purpose: it parses arguments and the entries file, calls `apply_entries`, and
prints. Exit codes: 0 done (for `diff`: always 0, whether or not there are changes --
read the output or `--output json`); 1 SPIRE refused or could not be reached, or some
items failed; 2 bad input (arguments or file), reported before any RPC is made.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from spire_fabric.entries._file import EntriesFile, entry_to_dict, load_entries_file
from spire_fabric.entries._reconcile import (
    ApplyResult,
    EntryChange,
    apply_entries,
    check_owner,
)
from spire_fabric.server import Entry, SpireServerClient, SpireServerError, SpireValidationError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["main"]

DEFAULT_SOCKET = "/tmp/spire-server/private/api.sock"  # spire-server's own default
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_EPILOG = """\
entries file (YAML):
  owner: payments                  # entry IDs become "payments.<digest>"
  defaults:                        # optional, merged into every entry
    parent_id: spiffe://example.org/spire/agent/join_token/abc
  entries:
    - spiffe_id: spiffe://example.org/payments/api
      selectors: [unix:uid:1000]
      x509_svid_ttl: 1h            # seconds or 1h30m / 90s
      jwt_svid_ttl: 5m
      federates_with: [partner.org]
      dns_names: [api.payments.svc]
      hint: internal
      admin: false                 # also: downstream, store_svid, expires_at

commands:
  diff   what apply would change; exits 0 either way, prints "no changes" if none
  apply  create, update and delete this owner's entries to match the file
  list   the entries this owner has on the server

Only entries whose ID starts with "<owner>." are ever changed or listed; entries made
with spire-server's CLI or by other owners are left alone.

exit codes: 0 ok, 1 SPIRE refused/unreachable or some items failed, 2 bad input
(checked before any RPC)."""


class _UsageError(Exception):
    """Bad arguments or file: exit 2, nothing sent."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spire_fabric.entries",
        description="Apply, diff or list owned SPIRE registration entries from files.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("apply", "make the server's owned entries match the file"),
        ("diff", "show what apply would change (dry run)"),
        ("list", "list the owner's entries on the server"),
    ):
        sub = commands.add_parser(
            name,
            help=text,
            description=text,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument(
            "-f", "--file", required=name != "list", help="entries YAML file (see below)"
        )
        sub.add_argument(
            "--socket", default=DEFAULT_SOCKET, help=f"server API socket ({DEFAULT_SOCKET})"
        )
        sub.add_argument("--owner", help="owner name; must match the file's owner if both set")
        sub.add_argument("--output", "-o", choices=("table", "json"), default="table")
        sub.add_argument("--timeout", type=float, default=30.0, help="seconds per RPC")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Without the cyclic garbage collector while the command runs: a listing or a plan
    # makes a handful of container objects per entry (the entry, its IDs, selectors,
    # tuples), none in a cycle, so reference counting frees them and the collector's
    # passes over them found nothing; they were a fifth of `list`'s CPU at 10k entries.
    # Only this short-lived program does it, never the library.
    gc.disable()
    try:
        return _run(args)
    finally:
        gc.enable()


def _run(args: argparse.Namespace) -> int:
    try:
        spec = _load(args)
        owner = _owner(args, spec)
        if not os.path.exists(args.socket.removeprefix("unix://")):
            raise SpireServerError(f"no SPIRE server API socket at {args.socket}")
        with SpireServerClient(args.socket, timeout=args.timeout) as client:
            if args.command == "list":
                entries = _owned(client.list_entries(id_prefix=f"{owner}."))
                _print_list(args.output, owner, entries)
                return EXIT_OK
            assert spec is not None
            dry_run = args.command == "diff"
            result = apply_entries(client, spec.entries, owner=owner, dry_run=dry_run)
    except _UsageError as err:
        _error(str(err))
        return EXIT_USAGE
    except SpireValidationError as err:
        _error(str(err))
        return EXIT_USAGE
    except SpireServerError as err:
        _error(str(err))
        return EXIT_FAILED
    _print_result(args.output, owner, result, dry_run)
    return EXIT_FAILED if result.failures else EXIT_OK


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _load(args: argparse.Namespace) -> EntriesFile | None:
    return load_entries_file(args.file) if args.file else None


def _owner(args: argparse.Namespace, spec: EntriesFile | None) -> str:
    file_owner = spec.owner if spec else None
    if args.owner and file_owner and args.owner != file_owner:
        raise _UsageError(
            f"--owner {args.owner!r} differs from the owner {file_owner!r} in {args.file}; "
            "applying a file as another owner would delete that owner's entries"
        )
    owner = args.owner or file_owner
    if not owner:
        raise _UsageError("no owner: put 'owner: NAME' in the file or pass --owner NAME")
    check_owner(owner)  # SpireValidationError -> exit 2
    return owner


def _owned(entries: Iterable[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: (str(e.spiffe_id), str(e.parent_id)))


# ---- output ------------------------------------------------------------------------------


def _console() -> Console:
    """The console for table output. rich is imported here, not at the top: `--output json`
    (what scripts and the benchmarks run) never draws a table, and importing rich was about
    a tenth of this program's start-up."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def _dumps_rows(doc: dict[str, Any], key: str) -> str:
    """``doc`` as indented JSON with the list under ``key`` last, one item per line.

    Why not ``json.dumps(doc, indent=2)``: with an indent the standard library encodes in
    pure Python, which was most of `list --output json` at 10k entries; each item here
    goes through the C encoder. Still one JSON document, and still readable.
    """
    head = {k: v for k, v in doc.items() if k != key}
    rows = ",\n    ".join(json.dumps(row) for row in doc[key])
    body = f"[\n    {rows}\n  ]" if rows else "[]"
    # the head without its closing "\n}", then the list as its last member
    inner = json.dumps(head, indent=2)[:-2] + ",\n" if head else "{\n"
    return f"{inner}  {json.dumps(key)}: {body}\n}}"


def _change_dict(change: EntryChange, error: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "action": change.action,
        "entry_id": change.entry.id,
        "spiffe_id": str(change.entry.spiffe_id),
        "parent_id": str(change.entry.parent_id),
        "fields": sorted(f.value for f in change.fields),
    }
    if error is not None:
        data["error"] = error
    return data


def _print_result(output: str, owner: str, result: ApplyResult, dry_run: bool) -> None:
    failed = {id(change): str(error) for change, error in result.failures}
    changes = result.plan.changes
    if output == "json":
        doc = {
            "owner": owner,
            "dry_run": dry_run,
            "changes": [_change_dict(c, failed.get(id(c))) for c in changes],
            "unchanged": len(result.plan.unchanged),
            "failed": len(result.failures),
        }
        print(_dumps_rows(doc, "changes"))
        return
    from rich.table import Table

    out = _console()
    if not changes:
        out.print(f"no changes (owner {owner}, {len(result.plan.unchanged)} entries up to date)")
        return
    table = Table(title=f"{'planned' if dry_run else 'applied'} changes for owner {owner}")
    for column in ("action", "SPIFFE ID", "parent ID", "fields", "entry ID"):
        table.add_column(column, overflow="fold")
    if not dry_run:
        table.add_column("result", overflow="fold")
    for change in changes:
        row = [
            change.action,
            str(change.entry.spiffe_id),
            str(change.entry.parent_id),
            ", ".join(sorted(f.value for f in change.fields)),
            change.entry.id,
        ]
        if not dry_run:
            row.append(f"FAILED: {failed[id(change)]}" if id(change) in failed else "ok")
        table.add_row(*row)
    out.print(table)
    plan = result.plan
    counts = (
        f"{len(plan.of('create'))} to create, {len(plan.of('update'))} to update, "
        f"{len(plan.of('delete'))} to delete, {len(plan.unchanged)} unchanged"
        if dry_run
        else f"{result.created} created, {result.updated} updated, {result.deleted} deleted, "
        f"{len(plan.unchanged)} unchanged, {len(result.failures)} failed"
    )
    out.print(counts)


def _print_list(output: str, owner: str, entries: list[Entry]) -> None:
    if output == "json":
        print(
            _dumps_rows({"owner": owner, "entries": [entry_to_dict(e) for e in entries]}, "entries")
        )
        return
    from rich.table import Table

    out = _console()
    table = Table(title=f"entries of owner {owner}")
    for column in ("entry ID", "SPIFFE ID", "parent ID", "selectors", "X.509 TTL"):
        table.add_column(column, overflow="fold")
    for e in entries:
        ttl = str(e.x509_svid_ttl) if e.x509_svid_ttl else "default"
        sels = ", ".join(str(s) for s in e.selectors)
        table.add_row(e.id, str(e.spiffe_id), str(e.parent_id), sels, ttl)
    out.print(table)
    out.print(f"{len(entries)} entries")
