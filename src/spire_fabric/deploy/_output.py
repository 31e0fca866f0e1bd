"""What the subcommands print (plans, steps) and the state lock they hold while changing."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from spire_fabric.deploy._common import UsageError
from spire_fabric.runtime.deployment import Change, Deployment, DeploymentPlan
from spire_fabric.runtime.local import StateError, state_lock
from spire_fabric.topology import (
    Target,
    Topology,
    kubernetes_view,
    local_only_notes,
    posture_warnings,
)


@contextlib.contextmanager
def locked(path: Path, command: str, console: Console) -> Iterator[None]:
    """Hold the state directory's lock; say once whom we wait for."""
    try:
        with state_lock(path, command, waiting=lambda m: console.print(f"[yellow]{escape(m)}")):
            yield
    except StateError as err:
        raise UsageError(str(err)) from err


def print_target_notes(deployment: Deployment, console: Console) -> None:
    """One ``note:`` line when the target leaves part of the topology out (the Kubernetes
    target and sidecar-carrying workloads, in this release): said, never silent."""
    if deployment.target != "kubernetes":
        return
    written = getattr(deployment, "written_topology", deployment.topology)
    for note in local_only_notes(kubernetes_view(written)):
        console.print(f"[yellow]note: {escape(note)}[/yellow]")


def print_warnings(topology: Topology, target: Target, console: Console) -> None:
    """One ``warning:`` line per weakening opt-in of the topology (``posture_warnings``)."""
    for w in posture_warnings(topology, target):
        console.print(f"[yellow]warning: {escape(w)}[/yellow]")


_ACTION_STYLE = {"create": "green", "start": "green", "set": "green", "update": "yellow",
                 "restart": "yellow", "delete": "red", "stop": "red"}  # fmt: skip


# A plan of 50k entries printed row by row took over a minute in rich and no reader reads
# it; the table shows this many changes of each action and kind, then counts the rest.
ROWS_PER_KIND = 20


def print_plan(plan: DeploymentPlan, console: Console, *, title: bool = True) -> None:
    """Terraform-style: one line per change, a summary, and "no changes" when all is well."""
    if title:
        console.print(f"[bold]plan[/bold] {plan.topology} on {plan.target}")
    shown: Counter[tuple[str, str]] = Counter()
    for c in plan.changes:
        shown[(c.action, c.kind)] += 1
        if shown[(c.action, c.kind)] > ROWS_PER_KIND:
            continue
        style = _ACTION_STYLE.get(c.action, "white")
        console.print(f"  [{style}]{c.action:>7}[/{style}] {escape(_line(c))}")
    for (action, kind), n in shown.items():
        if n > ROWS_PER_KIND:
            console.print(
                f"  [dim]... and {n - ROWS_PER_KIND} more {kind} to {action} "
                "(--output json lists every one)[/dim]"
            )
    for note in plan.notes:
        console.print(f"  [dim]note: {escape(note)}[/dim]")
    if plan.versions:
        console.print("SPIRE versions: " + escape(_versions_line(plan.versions)), soft_wrap=True)
    if plan.published:
        console.print("published ports (reachable beyond where their owner runs):")
        for port in plan.published:
            console.print(f"  {escape(str(port))}", soft_wrap=True)
    if not plan:
        unchanged = f" ({plan.unchanged} objects unchanged)" if plan.unchanged else ""
        console.print(f"no changes: the deployment matches the topology{unchanged}")
        return
    counts: dict[str, int] = {}
    for c in plan.changes:
        counts[c.action] = counts.get(c.action, 0) + 1
    unchanged = f", {plan.unchanged} unchanged" if plan.unchanged else ""
    console.print("plan: " + ", ".join(f"{n} to {a}" for a, n in counts.items()) + unchanged)


def _versions_line(versions: tuple[tuple[str, str], ...]) -> str:
    """``1.13.3: server/a, agent/b`` grouped by version (one line when all agree)."""
    by_version: dict[str, list[str]] = {}
    for component, version in versions:
        by_version.setdefault(version, []).append(component)
    if len(by_version) == 1:
        ((version, components),) = by_version.items()
        return f"{version} (all {len(components)} servers and agents)"
    return "; ".join(f"{v}: {', '.join(c)}" for v, c in sorted(by_version.items()))


def _line(c: Change) -> str:
    text = f"{c.kind} {c.name}"
    if c.fields:
        text += f" [{', '.join(c.fields)}]"
    return text + (f": {c.detail}" if c.detail else "")


class StepPrinter:
    """Prints each step of `up` with how long it took, so slow steps are visible."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.timings: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        with self.console.status(escape(name) + " …"):
            try:
                yield
            except BaseException:
                elapsed = time.monotonic() - start
                self.console.print(f"[red]✗[/red] {escape(name)} [dim]({elapsed:.1f}s)[/dim]")
                raise
        elapsed = time.monotonic() - start
        self.timings.append((name, elapsed))
        self.console.print(f"[green]✓[/green] {escape(name)} [dim]({elapsed:.1f}s)[/dim]")
