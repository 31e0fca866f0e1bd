"""``status``: every component of a deployment (local or Kubernetes) with pid or pod, health,
SVID expiry; then one line per server with its authorities (from the same report as
``deploy authorities`` and verify's authority checks); last, with ``monitoring:``, the alerts
firing in Alertmanager (the same API `verify`'s monitoring-alerts check reads)."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spire_fabric.deploy._common import add_deployment_args, choose
from spire_fabric.errors import SpireFabricError
from spire_fabric.runtime.deployment import ComponentHealth
from spire_fabric.runtime.monitoring import MonitoringError, active_alerts

if TYPE_CHECKING:
    from spire_fabric.verify import AuthoritiesReport, ServerAuthorities


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("status", help="show each component's health (local or Kubernetes)")
    add_deployment_args(p)
    p.add_argument("--output", choices=("table", "json"), default="table",
                   help="a table (default) or JSON for scripts")
    p.add_argument("-v", "--verbose", action="store_true", help="also restarts and details")
    p.set_defaults(run=run)


def _expiry(unix: int | None) -> str:
    if not unix:
        return "-"
    left = unix - time.time()
    return f"in {left / 3600:.1f}h" if left > 0 else "expired"


def _health(r: ComponentHealth) -> tuple[str, int]:
    """The health cell (rich markup) and its width as shown."""
    if r.healthy:
        return "[green]healthy[/green]", len("healthy")
    if r.running:
        return "[yellow]running, not healthy[/yellow]", len("running, not healthy")
    return "[red]down[/red]", len("down")


def status_table(rows: list[ComponentHealth], *, title: str, kube: bool, verbose: bool) -> Table:
    """The status table: whole words where a word is the information, folding where a
    value is long and only needs to be complete.

    Why these widths: rich shrinks columns that may wrap first and all columns evenly only
    as a last resort. So kind, health, expiry and restarts never wrap and keep their
    widest value; the pod (a generated name) and the detail fold onto more lines; the
    component name stays whole, except with -v, where it must fold too for the detail to
    get any room in 80 columns.
    """
    table = Table(title=title, title_justify="left", box=None)
    cells = [
        (r, _health(r), r.extra.get("pod") or "-" if kube else str(r.pid or "-")) for r in rows
    ]

    def widest(values: list[int], header: str) -> int:
        return max([len(header), *values])

    table.add_column("kind", no_wrap=True, min_width=widest([len(r.kind) for r in rows], "kind"))
    if verbose:
        table.add_column("name", overflow="fold")
    else:
        table.add_column("name", no_wrap=True)
    table.add_column("pod" if kube else "pid", overflow="fold")
    table.add_column(
        "health", no_wrap=True, min_width=widest([w for _, (_, w), _ in cells], "health")
    )
    table.add_column("SVID\nexpires", no_wrap=True, min_width=len("in 99.9h"))
    if verbose:
        table.add_column("restarts", no_wrap=True)
        table.add_column("detail", overflow="fold")
    for r, (health, _), where in cells:
        detail = r.detail + (f"; last exit: {r.last_exit}" if r.last_exit else "")
        row = [r.kind, escape(r.name), escape(where), health, _expiry(r.svid_expires_at)]
        if verbose:
            row += [str(r.restarts), escape(detail)]
        table.add_row(*row)
    return table


def authority_line(s: ServerAuthorities, now: float | None = None) -> str:
    """One server's authorities in one line (rich markup): the active X.509 and JWT
    authority with their expiry, then what else is there (prepared, old, tainted)."""
    at = time.time() if now is None else now
    if s.error:
        return f"[bold]{escape(s.server)}[/bold]: [red]could not be asked: {escape(s.error)}[/red]"
    parts = []
    for active, label in ((s.authority("x509", "active"), "X.509"),
                          (s.authority("jwt", "active"), "JWT")):  # fmt: skip
        if active is None:
            parts.append(f"{label} [red]no active authority[/red]")
            continue
        left = active.expires_at - at
        when = f"expires in {left / 3600:.1f}h" if left > 0 else "[red]expired[/red]"
        tainted = " [red]tainted[/red]" if active.tainted else ""
        parts.append(f"{label} {escape(active.authority_id[:16])} {when}{tainted}")
    others = []
    for r in s.authorities:
        if r.slot != "active":
            label = "X.509" if r.kind == "x509" else "JWT"
            # out of the bundle means revoked, except for an X.509 authority under an
            # upstream one: the bundle never holds that (its root is there instead)
            gone = not r.in_bundle and not r.upstream_authority_subject_key_id
            state = " [red]tainted[/red]" if r.tainted else " (revoked)" if gone else ""
            others.append(f"{r.slot} {label}{state}")
    others += [f"[red]tainted root {escape(u.root_subject_key_id[:16])}[/red]"
               for u in s.upstream if u.root_tainted]  # fmt: skip
    tail = "; " + ", ".join(others) if others else "; no prepared, old or tainted authority"
    return f"[bold]{escape(s.server)}[/bold]: " + "; ".join(parts) + tail


def authority_lines(report: AuthoritiesReport, now: float | None = None) -> list[str]:
    """The authorities section of ``status``: a heading and one line per server."""
    return ["authorities (details: deploy authorities; checks: deploy verify)"] + [
        "  " + authority_line(s, now) for s in report.servers
    ]


def alert_lines(alertmanager: str | None) -> list[str]:
    """The alerts section of ``status`` (rich markup): one line per firing alert, or why
    they cannot be read; nothing for a deployment without monitoring."""
    if alertmanager is None:
        return []
    try:
        firing = active_alerts(alertmanager)
    except MonitoringError as err:
        return [f"alerts: [red]cannot read Alertmanager[/red]: {escape(str(err))}"]
    if not firing:
        return [f"alerts: none firing ({alertmanager})"]
    lines = [f"alerts: [red]{len(firing)} firing[/red] ({alertmanager})"]
    for a in firing:
        lines.append(f"  [red]{escape(a.name)}[/red] {escape(a.component)} "
                     f"since {escape(a.starts_at[:19])}: {escape(a.summary)}")  # fmt: skip
    return lines


def run(args: argparse.Namespace, console: Console) -> int:
    # imported here, not at the top: every `deploy` command (a 50k `plan` too) loads this
    # module to build its parser, and the checks' modules (TLS, federation) are its largest
    from spire_fabric.verify import authorities_report

    chosen = choose(args)
    report: AuthoritiesReport | None = None
    alerts: list[str] = []
    with chosen.open() as deployment:
        rows = deployment.status()
        where, name = f"{deployment.target}, {chosen.state_dir}", deployment.name
        if args.output != "json":  # JSON stays the component rows; `authorities` has its own
            report = authorities_report(deployment)
            # read while the deployment is open: on Kubernetes the URL is its port-forward
            try:
                urls = deployment.monitoring_urls()
                alerts = alert_lines(urls[1] if urls else None)
            except SpireFabricError as err:  # no Alertmanager pod to forward to
                alerts = [f"alerts: [red]cannot reach Alertmanager[/red]: {escape(str(err))}"]
    if args.output == "json":
        print(json.dumps([r.__dict__ for r in rows], indent=2))
    else:
        kube = any("pod" in r.extra for r in rows)  # where each runs: a pod, else a pid
        title = f"status: {name} ({where})"
        console.print(status_table(rows, title=title, kube=kube, verbose=args.verbose))
        for r in rows:  # why something is down is worth a line even without -v
            if not r.healthy and r.last_exit and not args.verbose:
                console.print(f"[red]{escape(r.name)}[/red]: last exit: {escape(r.last_exit)}")
        if report is not None:
            for line in authority_lines(report):
                console.print(line)
        for line in alerts:
            console.print(line)
    return 0 if all(r.healthy for r in rows) else 1
