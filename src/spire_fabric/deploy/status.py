"""``status``: every component of a local deployment with pid, port, health, SVID expiry."""

from __future__ import annotations

import argparse
import json
import time

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spire_fabric.deploy._local import add_state_dir_arg, open_deployment


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("status", help="show every component of a local deployment")
    add_state_dir_arg(p)
    p.add_argument("--output", choices=("table", "json"), default="table")
    p.set_defaults(run=run)


def _expiry(unix: int | None) -> str:
    if not unix:
        return "-"
    left = unix - time.time()
    when = time.strftime("%H:%M:%S", time.localtime(unix))
    return f"{when} (in {left / 3600:.1f}h)" if left > 0 else f"{when} (expired)"


def run(args: argparse.Namespace, console: Console) -> int:
    deployment = open_deployment(args)
    rows = deployment.status()
    if args.output == "json":
        print(json.dumps([r.__dict__ for r in rows], indent=2))
    else:
        table = Table(
            title=f"status: {deployment.name} ({deployment.state.path})",
            title_justify="left",
        )
        for col in ("kind", "name", "pid", "health", "restarts", "SVID expires", "detail"):
            table.add_column(col, overflow="fold")
        for r in rows:
            health = (
                "[green]healthy[/green]"
                if r.healthy
                else ("[yellow]running, not healthy[/yellow]" if r.running else "[red]down[/red]")
            )
            detail = r.detail + (f"; last exit: {r.last_exit}" if r.last_exit else "")
            table.add_row(
                r.kind,
                escape(r.name),
                str(r.pid or "-"),
                health,
                str(r.restarts),
                _expiry(r.svid_expires_at),
                escape(detail),
            )
        console.print(table)
    return 0 if all(r.healthy for r in rows) else 1
