"""``render``: write every config of a topology into a directory, changing nothing else."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from spire_fabric.deploy._common import UsageError, resolve_topology
from spire_fabric.render import (
    RenderPaths,
    render_agent_config,
    render_alert_rules,
    render_alertmanager_config,
    render_mermaid,
    render_prometheus_config,
    render_server_config,
)
from spire_fabric.render.kubernetes import InstallerSecrets, render_kubernetes_manifests
from spire_fabric.runtime.registry import TARGET_NAMES, provider
from spire_fabric.runtime.targets import TargetError
from spire_fabric.topology import PRESET_NAMES, Target, Topology, dump_topology


def render_files(
    topology: Topology, target: Target, state_dir: str, secrets: InstallerSecrets | None = None
) -> dict[str, str]:
    """Relative path -> content for everything ``render`` writes. Pure.

    ``state_dir`` is where the local target keeps its files (it appears inside configs);
    ``secrets`` fills the Kubernetes installer's Secrets (skeletons without).
    """
    paths = RenderPaths.local(state_dir) if target == "local" else RenderPaths.kubernetes()
    files: dict[str, str] = {
        "topology.yaml": dump_topology(topology),
        "architecture.mmd": render_mermaid(topology),
    }
    for s in topology.servers:
        files[f"servers/{s.name}/server.conf"] = render_server_config(topology, s.name, paths)
    for a in topology.agents:
        files[f"agents/{a.name}/agent.conf"] = render_agent_config(topology, a.name, paths)
    if topology.monitoring is not None:
        # the rules are the same on both targets; the scrape config is the local target's
        # (Kubernetes service discovery is not rendered yet)
        files["monitoring/rules.yml"] = render_alert_rules(topology)
        if target == "local":
            files["monitoring/prometheus.yml"] = render_prometheus_config(topology, paths)
            files["monitoring/alertmanager.yml"] = render_alertmanager_config(topology)
    if target == "kubernetes":
        for rel, text in render_kubernetes_manifests(topology, secrets).items():
            files[f"kubernetes/{rel}"] = text
    return files


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "render",
        help="write a topology's configs, diagrams and Kubernetes manifests",
        allow_abbrev=False,
    )
    p.add_argument(
        "--topology",
        default=None,
        metavar="PRESET|FILE.yaml",
        help=f"a preset ({', '.join(PRESET_NAMES)}; scale:agents=N,workloads=N,running=N,"
        "entries=N on the local target) or a topology YAML file (default: the "
        "deployment's in --state-dir)",
    )
    p.add_argument(
        "--target",
        choices=TARGET_NAMES,
        default="local",
        help="render for local processes (default) or Kubernetes manifests too",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="a deployment's state: render what `up` applied there (on Kubernetes its "
        "Secrets filled in, so `kubectl apply --server-side` of the files in order makes "
        "the same objects)",
    )
    # `--output` means a format (table|json) in every other command; here the flag names
    # a directory, so it has its own name
    p.add_argument(
        "-o", "--output-dir", type=Path, metavar="DIR", help="directory to write into (required)"
    )
    p.add_argument("--output", dest="output_format_misuse", help=argparse.SUPPRESS)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    if args.output_format_misuse is not None:
        raise UsageError(
            "render writes files: pass the directory with -o/--output-dir DIR "
            "(--output selects table or json in the other commands)"
        )
    if args.output_dir is None:
        raise UsageError("render needs -o/--output-dir DIR")
    topology, secrets = _source(args)
    out: Path = args.output_dir
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    files = render_files(topology, args.target, str(out.resolve()), secrets)
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        console.print(f"wrote {path}")
    return 0


def _source(args: argparse.Namespace) -> tuple[Topology, InstallerSecrets | None]:
    """The topology to render and the Secrets' values: a given --topology as written, or
    the deployment in --state-dir as `up` applied it."""
    if args.state_dir is None:
        if args.topology is None:
            raise UsageError("render needs --topology, or --state-dir of a deployment")
        return resolve_topology(args.topology), None
    p = provider(args.target)
    if not p.holds(args.state_dir):
        raise UsageError(f"--state-dir {args.state_dir}: no {args.target} deployment there")
    try:
        applied = p.applied(args.state_dir)
    except TargetError as err:
        raise UsageError(str(err)) from err
    if args.topology is not None and resolve_topology(args.topology).name != applied[0].name:
        raise UsageError(f"--state-dir {args.state_dir} holds topology {applied[0].name!r}")
    return applied
