"""``up``: make a topology real on its target, then verify it.

No arguments means the enterprise topology on the local target, SQLite datastores and the
source design's ports, or, once it ran, the deployment as it was recorded: every flag left
out keeps its recorded value. Running it again changes nothing; after a crash or a reboot
it brings back only what is missing.
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.markup import escape

from spire_fabric.deploy._common import add_deployment_args, choose
from spire_fabric.deploy._output import StepPrinter, locked, print_plan, print_target_notes
from spire_fabric.deploy.plan import full_plan
from spire_fabric.runtime.deployment import Deployment

EXIT_FAILED = 1


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "up", help="start or heal a deployment (local or Kubernetes), verify it"
    )
    add_deployment_args(p, settings=True)
    p.add_argument("--no-verify", action="store_true", help="skip the verification at the end")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    started = time.monotonic()
    chosen = choose(args)
    # Bad input is refused before the lock is touched, so it changes nothing at all.
    chosen.create().close()
    # One `up` or `down` at a time per state directory; a second one waits, then reads
    # the state the first one left (its join tokens, its processes).
    with locked(chosen.state_dir, "up", console), chosen.create() as deployment:
        printer = StepPrinter(console)
        console.print(f"[bold]up[/bold] {deployment.name} on {deployment.target} → "
                      f"{escape(str(chosen.state_dir))}")  # fmt: skip
        print_target_notes(deployment, console)
        try:
            deployment.check()  # a refusal before the plan reads anything it may not
            plan = full_plan(chosen, deployment)
            print_plan(plan, console, title=False)
            deployment.up(printer, plan=plan)
        except Exception as err:
            message = chosen.provider.failure_message(err)
            if message is None:
                raise
            console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
            return EXIT_FAILED
        # Healing (a re-created entry, a restored federated bundle) reaches the agents on
        # their next sync: give it the target's time before saying red.
        p = chosen.provider
        return _verify(deployment, args, console, printer, started, p.converge_s,
                       pause=p.verify_pause_s)  # fmt: skip


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
            # what it waits for, so a slow `up` says where its time goes
            waiting = ", ".join(c.id for c in report.failed)
            console.print(f"  [dim]not green yet ({escape(waiting)}); again in {pause:g}s[/dim]")
            time.sleep(pause)
            report = verify_deployment(deployment)
    print_report(report, console)
    console.print(f"up to verified in {time.monotonic() - started:.1f}s")
    return 0 if report.ok else EXIT_FAILED
