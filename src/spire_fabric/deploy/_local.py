"""Options and helpers shared by the subcommands that act on a local deployment."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from spire_fabric.deploy._common import UsageError
from spire_fabric.runtime.deployment import Change, DeploymentPlan
from spire_fabric.runtime.local import (
    DEFAULT_PORT_BASE,
    LocalDeployment,
    StateError,
    default_state_dir,
    state_lock,
)


def add_state_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the deployment's state lives (default: ~/.local/state/spire-fabric/"
        "<topology>, or <topology>@kubernetes for the Kubernetes target)",
    )


def add_local_args(parser: argparse.ArgumentParser) -> None:
    add_state_dir_arg(parser)
    parser.add_argument(
        "--port-base",
        type=int,
        default=DEFAULT_PORT_BASE,
        help=f"shift every local port by PORT_BASE-{DEFAULT_PORT_BASE} "
        f"(default {DEFAULT_PORT_BASE}: upstream 31081/31443, downstream 32081/32443)",
    )
    parser.add_argument(
        "--datastore",
        default=None,
        metavar="URL",
        help="mysql://user:pass@host:port/db_{server} or postgres://… (default: SQLite)",
    )


def state_dir_for(args: argparse.Namespace, topology_name: str = "enterprise") -> Path:
    return args.state_dir or default_state_dir(topology_name)


def open_deployment(args: argparse.Namespace) -> LocalDeployment:
    try:
        return LocalDeployment.open(state_dir_for(args))
    except StateError as err:
        raise UsageError(str(err)) from err


@contextlib.contextmanager
def locked(path: Path, command: str, console: Console) -> Iterator[None]:
    """Hold the state directory's lock; say once whom we wait for."""
    try:
        with state_lock(path, command, waiting=lambda m: console.print(f"[yellow]{escape(m)}")):
            yield
    except StateError as err:
        raise UsageError(str(err)) from err


_ACTION_STYLE = {"create": "green", "start": "green", "set": "green", "update": "yellow",
                 "restart": "yellow", "delete": "red", "stop": "red"}  # fmt: skip


def print_plan(plan: DeploymentPlan, console: Console, *, title: bool = True) -> None:
    """Terraform-style: one line per change, a summary, and "no changes" when all is well."""
    if title:
        console.print(f"[bold]plan[/bold] {plan.topology} on {plan.target}")
    for c in plan.changes:
        style = _ACTION_STYLE.get(c.action, "white")
        console.print(f"  [{style}]{c.action:>7}[/{style}] {escape(_line(c))}")
    for note in plan.notes:
        console.print(f"  [dim]note: {escape(note)}[/dim]")
    if not plan:
        unchanged = f" ({plan.unchanged} objects unchanged)" if plan.unchanged else ""
        console.print(f"no changes: the deployment matches the topology{unchanged}")
        return
    counts: dict[str, int] = {}
    for c in plan.changes:
        counts[c.action] = counts.get(c.action, 0) + 1
    unchanged = f", {plan.unchanged} unchanged" if plan.unchanged else ""
    console.print("plan: " + ", ".join(f"{n} to {a}" for a, n in counts.items()) + unchanged)


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
