"""``status``: every component of a deployment with its pod or pid, health, SVID expiry."""

from __future__ import annotations

import argparse
import json
import time

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spire_fabric.deploy._common import add_deployment_args, choose


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("status", help="show every component of a deployment")
    add_deployment_args(p)
    p.add_argument("--output", choices=("table", "json"), default="table")
    p.add_argument("-v", "--verbose", action="store_true", help="also restarts and details")
    p.set_defaults(run=run)


def _expiry(unix: int | None) -> str:
    if not unix:
        return "-"
    left = unix - time.time()
    return f"in {left / 3600:.1f}h" if left > 0 else "expired"


def run(args: argparse.Namespace, console: Console) -> int:
    chosen = choose(args)
    with chosen.open() as deployment:
        rows = deployment.status()
        where, name = f"{deployment.target}, {chosen.state_dir}", deployment.name
    if args.output == "json":
        print(json.dumps([r.__dict__ for r in rows], indent=2))
    else:
        # one line per component in 80 columns; restarts and details with -v
        table = Table(
            title=f"status: {name} ({where})",
            title_justify="left",
            box=None,
        )
        # where it runs: a pod on Kubernetes, a pid locally (whichever the row has)
        columns = ["kind", "name", "pod/pid", "health", "SVID expires"]
        if args.verbose:
            columns += ["restarts", "detail"]
        for col in columns:
            table.add_column(col, overflow="fold" if args.verbose else "ellipsis",
                             no_wrap=not args.verbose)  # fmt: skip
        for r in rows:
            health = (
                "[green]healthy[/green]"
                if r.healthy
                else ("[yellow]running, not healthy[/yellow]" if r.running else "[red]down[/red]")
            )
            detail = r.detail + (f"; last exit: {r.last_exit}" if r.last_exit else "")
            where = r.extra.get("pod") or str(r.pid or "-")
            cells = [r.kind, escape(r.name), escape(where), health, _expiry(r.svid_expires_at)]
            if args.verbose:
                cells += [str(r.restarts), escape(detail)]
            table.add_row(*cells)
        console.print(table)
        for r in rows:  # why something is down is worth a line even without -v
            if not r.healthy and r.last_exit and not args.verbose:
                console.print(f"[red]{escape(r.name)}[/red]: last exit: {escape(r.last_exit)}")
    return 0 if all(r.healthy for r in rows) else 1
