"""Argument parsing and dispatch. Subcommands live in their own modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from rich.console import Console

from spire_fabric.deploy import down, plan, render, status, trust_anchor, up, verify
from spire_fabric.deploy._common import EXIT_USAGE, UsageError

# Add `up`, `verify`, `status`, `down` here: each module has register(subparsers) and a
# run(args, console) -> int installed with set_defaults(run=...).
SUBCOMMANDS: tuple[ModuleType, ...] = (plan, render, up, verify, status, down, trust_anchor)


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
        message = _kubernetes_failure(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1


def _kubernetes_failure(err: Exception) -> str | None:
    """A Kubernetes target failure as one line (no traceback): ours, or the API server gone
    or refusing in the middle of a command."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from spire_fabric.runtime.kubernetes import KubernetesTargetError

    if isinstance(err, KubernetesTargetError):
        return str(err)
    if isinstance(err, HTTPError):
        return f"lost the Kubernetes API server: {str(err).splitlines()[0][:300]}"
    if isinstance(err, ApiException):
        from spire_fabric.runtime.kubernetes._clusters import api_error_message

        return f"the Kubernetes API refused ({err.status}): {api_error_message(err)}"
    return None
