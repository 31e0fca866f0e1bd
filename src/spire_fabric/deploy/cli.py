"""Argument parsing and dispatch. Subcommands live in their own modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from rich.console import Console

import spire_fabric.deploy.authorities as authorities
import spire_fabric.deploy.down as down
import spire_fabric.deploy.image as image
import spire_fabric.deploy.plan as plan
import spire_fabric.deploy.render as render
import spire_fabric.deploy.rotate as rotate
import spire_fabric.deploy.status as status
import spire_fabric.deploy.trust_anchor as trust_anchor
import spire_fabric.deploy.up as up
import spire_fabric.deploy.verify as verify
from spire_fabric.deploy._common import EXIT_USAGE, UsageError
from spire_fabric.runtime.registry import TARGET_NAMES, provider

# Add `up`, `verify`, `status`, `down` here: each module has register(subparsers) and a
# run(args, console) -> int installed with set_defaults(run=...).
SUBCOMMANDS: tuple[ModuleType, ...] = (
    plan, render, up, verify, status, authorities, rotate, down, trust_anchor, image
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spire_fabric.deploy",
        description="Plan, render and run SPIRE topologies.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spire_fabric.deploy``: parse ``argv`` and run the subcommand; the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(soft_wrap=True)
    try:
        return int(args.run(args, console))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return int(getattr(args, "usage_exit", EXIT_USAGE))
    except Exception as e:
        message = _target_failure(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1


def _target_failure(err: Exception) -> str | None:
    """A target's failure as one line (no traceback): a step of `up`, or on Kubernetes the
    API server gone or refusing in the middle of a command."""
    for name in TARGET_NAMES:
        message = provider(name).failure_message(err)
        if message is not None:
            return message
    return None
