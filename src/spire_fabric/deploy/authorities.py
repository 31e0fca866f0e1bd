"""``authorities``: each server's X.509 and JWT authorities (active, prepared, old), its
upstream authority, how many agents and workload SVIDs chain to each, and whether every
federated peer holds the current bundle. What to look at before and during a rotation.

The facts come from :func:`spire_fabric.verify.authorities_report`, which code and
notebooks call on ``attach(name)``; this prints it.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spire_fabric.deploy._common import UsageError, add_deployment_args, choose

if TYPE_CHECKING:
    from spire_fabric.verify import AuthoritiesReport, ServerAuthorities


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "authorities",
        help="show each server's authorities and who chains to them (local or Kubernetes)",
    )
    add_deployment_args(p)
    p.add_argument("--server", action="append", default=None, metavar="NAME",
                   help="only this server (repeatable; default: every server)")  # fmt: skip
    p.add_argument("--output", choices=("table", "json"), default="table",
                   help="tables (default) or JSON for scripts")  # fmt: skip
    p.set_defaults(run=run)


def _expires(unix: int) -> str:
    left = unix - time.time()
    if left <= 0:
        return "expired"
    return f"in {left / 3600:.1f}h" if left < 72 * 3600 else f"in {left / 86400:.0f}d"


def print_server(s: ServerAuthorities, console: Console) -> None:
    """One server: its authorities as a table, then upstream, agents, workloads, peers."""
    title = f"{s.server} ({s.trust_domain})"
    if s.error:
        console.print(f"[bold]{escape(title)}[/bold]: [red]could not be asked: "
                      f"{escape(s.error)}[/red]")  # fmt: skip
        return
    table = Table(title=f"{title}, bundle sequence {s.bundle_sequence_number}",
                  title_justify="left", box=None)  # fmt: skip
    for header in ("kind", "slot", "authority ID", "expires", "bundle", "agents", "SVIDs"):
        table.add_column(header, overflow="fold")  # an ID is shown whole, folded if need be
    for r in s.authorities:
        held = "[red]tainted[/red]" if r.tainted else "held" if r.in_bundle else "-"
        table.add_row(
            r.kind, r.slot, escape(r.authority_id), _expires(r.expires_at), held,
            "-" if r.agents is None else str(r.agents), str(r.workload_svids),
        )  # fmt: skip
    console.print(table)
    for u in s.upstream:
        where = ("[red]tainted[/red]" if u.tainted else "in the bundle") if u.in_bundle else (
            "not in the bundle: revoked, or an intermediate whose root was not seen")  # fmt: skip
        if not u.in_bundle and u.root_subject_key_id:
            root_expiry = f" (expires {_expires(u.root_expires_at)})" if u.root_expires_at else ""
            where = (f"not in the bundle, which holds its root "
                     f"{escape(u.root_subject_key_id)}{root_expiry}"
                     f"{', [red]tainted[/red]' if u.root_tainted else ''}")  # fmt: skip
        expiry = f", expires {_expires(u.expires_at)}" if u.expires_at else ""
        console.print(f"  upstream authority {escape(u.subject_key_id)} signs "
                      f"{', '.join(u.signs)}{expiry}; {where}")  # fmt: skip
    for a in s.agents:
        source = (
            escape(a.authority_id) if a.authority_id else f"[yellow]?[/yellow] ({escape(a.detail)})"
        )
        console.print(f"  agent {escape(a.agent or a.spiffe_id)}: SVID {escape(a.serial_number)}"
                      f" expires {_expires(a.expires_at)}, signed by {source}")  # fmt: skip
    for w in s.workloads:
        if w.detail:
            console.print(f"  workload {escape(w.workload)}: [yellow]{escape(w.detail)}[/yellow]")
        if w.x509_authority_id or w.jwt_key_id:
            console.print(f"  workload {escape(w.workload)}: X.509-SVID by "
                          f"{escape(w.x509_authority_id or '?')}, JWT-SVID by "
                          f"{escape(w.jwt_key_id or '?')}")  # fmt: skip
    if s.leaked_intermediate is not None:
        console.print(f"  if leaked: {escape(s.leaked_intermediate.text)}")
    for p in s.peers:
        if p.equal:
            console.print(f"  peer {escape(p.peer)}: [green]its copy equals the bundle[/green]")
            continue
        console.print(f"  peer {escape(p.peer)}: [red]its copy differs[/red]: "
                      f"{escape(p.difference)}")  # fmt: skip


def print_report(report: AuthoritiesReport, console: Console) -> None:
    console.print(f"[bold]authorities[/bold] {report.deployment} on {report.target}")
    for s in report.servers:
        print_server(s, console)


def run(args: argparse.Namespace, console: Console) -> int:
    # imported here, not at the top: every `deploy` command (a 50k `plan` too) loads this
    # module to build its parser, and the checks' modules (TLS, federation) are its largest
    from spire_fabric.verify import AuthoritiesError, authorities_report

    with choose(args).open() as deployment:
        try:
            report = authorities_report(deployment, args.server)
        except AuthoritiesError as err:
            raise UsageError(str(err)) from err
    if args.output == "json":
        print(report.to_json())
    else:
        print_report(report, console)
    return 0 if all(not s.error for s in report.servers) else 1
