"""``down``: stop exactly what `up` started (processes by recorded pid, objects by our
labels); keep the state unless ``--purge``."""

from __future__ import annotations

import argparse

from rich.console import Console

from spire_fabric.deploy._common import add_deployment_args, choose
from spire_fabric.deploy._output import locked


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("down", help="stop a deployment: exactly what `up` started")
    add_deployment_args(p)
    p.add_argument("--purge", action="store_true", help="also delete the state directory")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    chosen = choose(args)
    with locked(chosen.state_dir, "down", console), chosen.open() as deployment:
        stopped = deployment.down(purge=args.purge)
    for kept in getattr(deployment, "kept", []):
        console.print(f"kept {kept}")
    what = f"{len(stopped)}: " + ", ".join(stopped[:8]) if stopped else "nothing was running"
    more = f" and {len(stopped) - 8} more" if len(stopped) > 8 else ""
    console.print(f"down {deployment.name}: stopped or deleted {what}{more}")
    if args.purge:
        console.print(f"purged {chosen.state_dir}")
    return 0
