"""``verify``: prove a running local deployment works; non-zero exit when anything fails."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spire_fabric.deploy._local import add_state_dir_arg, open_deployment
from spire_fabric.runtime.deployment import Deployment
from spire_fabric.verify import Report
from spire_fabric.verify import verify_deployment as _verify


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("verify", help="check that a local deployment really works")
    add_state_dir_arg(p)
    p.add_argument("--output", choices=("table", "json"), default="table")
    p.set_defaults(run=run)


def verify_deployment(deployment: Deployment) -> Report:
    return _verify(deployment)


def print_report(report: Report, console: Console) -> None:
    table = Table(title=f"verify: {report.topology}", title_justify="left")
    for col in ("", "check", "detail"):
        table.add_column(col, overflow="fold")
    for c in report.checks:
        mark = "[green]✓[/green]" if c.ok else "[red]✗[/red]"
        table.add_row(mark, escape(c.title), escape(c.detail))
    console.print(table)
    summary = f"{len(report.checks) - len(report.failed)} passed, {len(report.failed)} failed"
    console.print(("[green]" if report.ok else "[red]") + summary)


def run(args: argparse.Namespace, console: Console) -> int:
    deployment = open_deployment(args)
    report = verify_deployment(deployment)
    if args.output == "json":
        print(report.to_json())
    else:
        print_report(report, console)
    return 0 if report.ok else 1
