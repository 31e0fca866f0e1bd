"""``up``: make a topology real on this machine, then verify it.

No arguments means the enterprise topology on the local target, SQLite datastores and the
source design's ports. Running it again changes nothing; after a crash or a reboot it brings
back only what is missing.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from spire_fabric.deploy._common import UsageError, resolve_topology
from spire_fabric.deploy._kube import add_kube_args, create
from spire_fabric.deploy._local import (
    StepPrinter,
    add_local_args,
    locked,
    print_plan,
    state_dir_for,
)
from spire_fabric.runtime.binaries import SpireBinariesError
from spire_fabric.runtime.deployment import Deployment
from spire_fabric.runtime.local import (
    LocalDeployment,
    LocalizeError,
    LocalSettings,
    StateError,
    UpError,
)
from spire_fabric.topology import Topology, TopologyError

EXIT_FAILED = 1
CONVERGE_S = 15.0
# Pods' entries are made by the controller manager after the pod starts, and reach the
# agent on its next sync (5 s): a first verify can be early.
KUBE_CONVERGE_S = 90.0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "up", help="start or heal a deployment (local or Kubernetes), verify it"
    )
    p.add_argument(
        "--topology",
        default="enterprise",
        metavar="PRESET|FILE.yaml",
        help="a preset or a topology YAML file (default: enterprise)",
    )
    p.add_argument(
        "--target",
        choices=("local", "kubernetes"),
        default="local",
        help="local processes (default) or the Kubernetes clusters of the topology",
    )
    add_local_args(p)
    add_kube_args(p)
    p.add_argument("--no-verify", action="store_true", help="skip the verification at the end")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    topology = resolve_topology(args.topology)
    if args.target == "kubernetes":
        return _run_kubernetes(args, topology, console)
    settings = LocalSettings(
        port_base=args.port_base, datastore_url=args.datastore, uid=os.getuid()
    )
    state_dir = state_dir_for(args, topology.name)
    started = time.monotonic()
    # Bad input is refused before the lock is touched, so it changes nothing at all.
    _create(topology, state_dir, settings)
    # One `up` or `down` at a time per state directory; a second one waits, then reads
    # the state the first one left (its join tokens, its processes).
    with locked(state_dir, "up", console):
        deployment = _create(topology, state_dir, settings)
        printer = StepPrinter(console)
        console.print(f"[bold]up[/bold] {topology.name} → {deployment.state.path}")
        try:
            plan = deployment.plan()
            print_plan(plan, console, title=False)
            deployment.up(printer, plan=plan)
        except (UpError, SpireBinariesError) as err:
            console.print(f"[red]error:[/red] {err}", markup=True, highlight=False)
            return EXIT_FAILED
    # Healing (a re-created entry, a restored federated bundle) reaches the agents on
    # their next sync (5 s in SPIRE 1.13): give it that long before saying red.
    return _verify(deployment, args, console, printer, started, CONVERGE_S, pause=1)


def _verify(
    deployment: Deployment,
    args: argparse.Namespace,
    console: Console,
    printer: StepPrinter,
    started: float,
    converge_s: float,
    *,
    pause: float,
) -> int:
    """The end of every `up`: verify, again until green or ``converge_s`` has passed."""
    if args.no_verify:
        console.print(f"up in {time.monotonic() - started:.1f}s (verification skipped)")
        return 0
    from spire_fabric.deploy.verify import print_report, verify_deployment

    with printer("verify"):
        report = verify_deployment(deployment)
        deadline = time.monotonic() + converge_s
        while not report.ok and time.monotonic() < deadline:
            time.sleep(pause)
            report = verify_deployment(deployment)
    print_report(report, console)
    console.print(f"up to verified in {time.monotonic() - started:.1f}s")
    return 0 if report.ok else EXIT_FAILED


def _create(topology: Topology, state_dir: Path, settings: LocalSettings) -> LocalDeployment:
    try:
        return LocalDeployment.create(topology, state_dir, settings)
    except (StateError, LocalizeError, TopologyError) as err:
        raise UsageError(str(err)) from err


def _run_kubernetes(args: argparse.Namespace, topology: Topology, console: Console) -> int:
    from spire_fabric.runtime.kubernetes import KubernetesTargetError

    started = time.monotonic()
    printer = StepPrinter(console)
    with create(args, topology) as deployment:
        contexts = ", ".join(f"{c}={x}" for c, x in deployment.settings.contexts.items())
        console.print(f"[bold]up[/bold] {topology.name} on kubernetes ({contexts})")
        try:
            deployment.check()  # a refusal before the plan reads anything it may not
            plan = deployment.plan()
            print_plan(plan, console, title=False)
            deployment.up(printer, plan=plan)
        except KubernetesTargetError as err:
            console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False)
            return EXIT_FAILED
        return _verify(deployment, args, console, printer, started, KUBE_CONVERGE_S, pause=3)
