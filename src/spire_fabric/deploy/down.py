"""``down``: stop exactly the processes `up` started (by recorded pid); keep state unless
``--purge``."""

from __future__ import annotations

import argparse

from rich.console import Console

from spire_fabric.deploy._kube import open_kube
from spire_fabric.deploy._local import add_state_dir_arg, locked, open_deployment, state_dir_for


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "down", help="stop a deployment (local processes or Kubernetes objects)"
    )
    add_state_dir_arg(p)
    p.add_argument("--target", choices=("local", "kubernetes"), default="local",
                   help="the local deployment (default) or the Kubernetes one")
    p.add_argument("--topology", default="enterprise", help="the deployment's topology name "
                   "(finds its state directory; default: enterprise)")
    p.add_argument("--purge", action="store_true", help="also delete the state directory")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    if args.target == "kubernetes":
        with open_kube(args) as kd:
            kd.down(purge=args.purge)
        for kept in kd.kept:
            console.print(f"kept {kept}")
        but = " but the CRDs others still use" if kd.kept else ""
        console.print(f"down {kd.name}: deleted every object of ours from its clusters{but}")
        return 0
    with locked(state_dir_for(args), "down", console):
        deployment = open_deployment(args)
        stopped = deployment.down(purge=args.purge)
    what = ", ".join(str(p) for p in stopped) or "nothing was running"
    console.print(f"down {deployment.name}: stopped {what}")
    if args.purge:
        console.print(f"purged {deployment.state.path}")
    return 0
