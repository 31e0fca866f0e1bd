"""``verify``: prove a running deployment works; non-zero exit when anything fails."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spire_fabric.deploy._common import add_deployment_args, choose
from spire_fabric.deploy._output import print_warnings
from spire_fabric.runtime.deployment import Deployment

if TYPE_CHECKING:
    from spire_fabric.verify import Report


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "verify", help="check that a deployment (local or Kubernetes) really works"
    )
    add_deployment_args(p)
    p.add_argument("--output", choices=("table", "json"), default="table",
                   help="a table (default) or JSON for scripts")  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true", help="the whole detail of each check")
    p.set_defaults(run=run)


def verify_deployment(deployment: Deployment) -> Report:
    # imported here, not at the top: every `deploy` command (a 50k `plan` too) loads this
    # module to build its parser, and the checks' modules (TLS, federation) are its largest
    from spire_fabric.verify import verify_deployment as _verify

    return _verify(deployment)


def print_report(report: Report, console: Console, *, verbose: bool = False) -> None:
    """One line per check, cut to the terminal's width (80 columns read well); the whole
    detail with ``verbose`` (``-v``) or ``--output json``. A failed check's detail is
    always shown whole: it is the one the user needs to read."""
    table = Table(title=f"verify: {report.topology}", title_justify="left", box=None)
    table.add_column("", no_wrap=True, width=1)
    # fixed widths: rich would otherwise squeeze the mark column away for long titles
    room = max(console.width - 7, 40)
    fit = {"overflow": "fold"} if verbose else {"no_wrap": True, "overflow": "ellipsis"}
    table.add_column("check", width=room * 11 // 20, **fit)
    table.add_column("detail", width=room - room * 11 // 20, **fit)
    for c in report.checks:
        mark = "[green]✓[/green]" if c.ok else "[red]✗[/red]"
        detail = c.detail if c.ok or verbose else "failed: see below"
        table.add_row(mark, escape(c.title), escape(detail))
    console.print(table)
    if not verbose:
        for c in report.failed:
            console.print(f"[red]✗ {escape(c.title)}[/red]: {escape(c.detail)}")
    summary = f"{len(report.checks) - len(report.failed)} passed, {len(report.failed)} failed"
    console.print(("[green]" if report.ok else "[red]") + summary)


def run(args: argparse.Namespace, console: Console) -> int:
    with choose(args).open() as deployment:
        report = verify_deployment(deployment)
    if args.output == "json":
        print(report.to_json())
        print_warnings(deployment.topology, deployment.target, Console(stderr=True))
    else:
        print_report(report, console, verbose=args.verbose)
        print_warnings(deployment.topology, deployment.target, console)
    return 0 if report.ok else 1
