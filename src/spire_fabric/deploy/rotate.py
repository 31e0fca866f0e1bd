"""``rotate {x509|jwt} --server NAME [--revoke]``: rotate one server's authority step by
step (prepare, wait for every holder, activate, taint, wait for renewals, revoke), each
step shown with its time. An interrupted rotation resumes where SPIRE says it stands.

``rotate root [--revoke]``: a new Enterprise Root CA and intermediates for every server
under it, the old root tainted and (``--revoke``) revoked everywhere.

The work is :func:`spire_fabric.runtime.core.rotation.rotate` and
:func:`spire_fabric.runtime.core.root_rotation.rotate_root`; this prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from spire_fabric.deploy._common import UsageError, add_deployment_args, choose
from spire_fabric.deploy._output import StepPrinter
from spire_fabric.runtime.deployment import Deployment, StepReporter

if TYPE_CHECKING:
    from spire_fabric.runtime.core.root_rotation import RootRotationResult
    from spire_fabric.runtime.core.rotation import RotationResult

EXIT_REFUSED = 3


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "rotate",
        help="rotate a server's X.509 or JWT authority, or the Enterprise Root CA (local or "
        "Kubernetes)",
    )
    p.add_argument("kind", choices=("x509", "jwt", "root"),
                   help="which authority (root: the Enterprise Root CA and every "
                   "intermediate under it)")  # fmt: skip
    add_deployment_args(p)
    p.add_argument("--server", metavar="NAME",
                   help="the server to rotate (x509, jwt; root rotates them all)")  # fmt: skip
    p.add_argument("--revoke", action="store_true",
                   help="also revoke the old authority once nothing chains to it")  # fmt: skip
    p.add_argument("--force", action="store_true",
                   help="go on when a wait times out (a holder lacks the key, an SVID "
                   "still chains to the old one)")  # fmt: skip
    p.add_argument("--wait", type=float, default=120.0, metavar="SECONDS",
                   help="how long each wait may take (default 120)")  # fmt: skip
    p.add_argument("--external-grace", type=float, default=0.0, metavar="SECONDS",
                   help="rotate root: once every SPIFFE holder has the new root, wait this "
                   "long before signing under it, so clients that trust `trust-anchor` "
                   "(it prints old and new root) re-read it first (default 0)")  # fmt: skip
    p.add_argument("--output", choices=("text", "json"), default="text",
                   help="steps as they go (default) or JSON with per-step timings")  # fmt: skip
    p.set_defaults(run=run)


@contextlib.contextmanager
def _quiet(_: str) -> Iterator[None]:
    yield


def run(args: argparse.Namespace, console: Console) -> int:
    if not (math.isfinite(args.wait) and args.wait > 0):  # nan passes `<= 0`
        raise UsageError(f"--wait must be a positive number of seconds, got {args.wait:g}")
    if not (math.isfinite(args.external_grace) and args.external_grace >= 0):
        raise UsageError(f"--external-grace must be 0 or more seconds, got "
                         f"{args.external_grace:g}")  # fmt: skip
    if args.kind != "root" and args.external_grace:
        raise UsageError("--external-grace is for rotate root: an x509 or jwt rotation "
                         "keeps the Enterprise Root CA that external clients trust")  # fmt: skip
    if args.kind == "root" and args.server is not None:
        raise UsageError("rotate root takes no --server: it rotates every server under the "
                         "Enterprise Root CA at once")  # fmt: skip
    if args.kind != "root" and args.server is None:
        raise UsageError(f"rotate {args.kind} needs --server NAME")
    # imported here, not at the top: every `deploy` command (a 50k `plan` too) loads this
    # module to build its parser, and rotation brings the checks' modules (TLS, federation)
    from spire_fabric.runtime.core.rotation import rotate

    started = time.monotonic()
    with choose(args).open() as deployment:
        if args.kind == "root":
            return _root(args, console, deployment, started)
        names = [s.name for s in deployment.topology.servers]
        if args.server not in names:  # bad input: exit 2 like every command, not a refusal
            raise UsageError(f"--server {args.server!r}: no such server in topology "
                             f"{deployment.name!r}; its servers: {', '.join(names)}")  # fmt: skip
        if args.output == "text":
            console.print(f"[bold]rotate[/bold] {args.kind} of {escape(args.server)} "
                          f"({deployment.name} on {deployment.target})")  # fmt: skip
        return _report(args, console, started, lambda report: rotate(
            deployment, args.server, args.kind, revoke=args.revoke, force=args.force,
            timeout=args.wait, report=report))  # fmt: skip


def _report(
    args: argparse.Namespace,
    console: Console,
    started: float,
    work: Callable[[StepReporter], RotationResult | RootRotationResult],
) -> int:
    """Run one rotation with its steps shown (text) or kept quiet (json), then say how it
    ended: a refusal is exit 3 with its reason, a result its JSON or its last line."""
    from spire_fabric.runtime.core.root_rotation import RootRotationResult
    from spire_fabric.runtime.core.rotation import RotationRefused

    try:
        result = work(StepPrinter(console) if args.output == "text" else _quiet)
    except RotationRefused as err:
        print(f"refused: {err}", file=sys.stderr)
        return EXIT_REFUSED
    if args.output == "json":
        print(result.to_json())
        return 0
    _notes(console, result)
    took = f"(rotated in {time.monotonic() - started:.1f}s)"
    if isinstance(result, RootRotationResult):
        console.print(f"root {escape(result.new_root)} (generation {result.generation}) is "
                      f"current; old root {escape(result.old_root)} "
                      f"{'revoked' if result.revoked else 'tainted'} {took}")  # fmt: skip
    else:
        console.print(f"{escape(result.new_authority_id)} is active; old "
                      f"{escape(result.old_authority_id)}"
                      f"{' revoked' if result.revoked else ''} {took}")  # fmt: skip
    return 0


def _notes(console: Console, result: RotationResult | RootRotationResult) -> None:
    """What was forced, and what a skipped step says (rotate x509 under an upstream)."""
    for step in result.steps:
        if step.outcome == "forced":
            console.print(f"[yellow]forced[/yellow] {escape(step.name)}: {escape(step.detail)}")


def _root(
    args: argparse.Namespace, console: Console, deployment: Deployment, started: float
) -> int:
    from spire_fabric.runtime.core.root_rotation import rotate_root

    if args.output == "text":
        console.print(f"[bold]rotate root[/bold] ({deployment.name} on {deployment.target})")
    return _report(args, console, started, lambda report: rotate_root(
        deployment, revoke=args.revoke, force=args.force, timeout=args.wait,
        external_grace=args.external_grace, report=report))  # fmt: skip
