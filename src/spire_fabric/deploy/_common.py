"""What every subcommand shares: the arguments that name a deployment (topology, target,
state directory, the settings on top), opening it through the target registry, and user
errors. No subcommand asks which target it runs on."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from spire_fabric.errors import SpireFabricError
from spire_fabric.runtime.deployment import Deployment
from spire_fabric.runtime.local import DEFAULT_PORT_BASE, LocalizeError, StateError
from spire_fabric.runtime.registry import TARGET_NAMES, choose_target, refuse_foreign_options
from spire_fabric.runtime.targets import DeploymentOptions, TargetError, TargetProvider
from spire_fabric.topology import (
    PRESET_NAMES,
    Topology,
    TopologyError,
    is_preset_spelling,
    load_topology,
    preset,
    unknown_image_role,
)

EXIT_USAGE = 2
_USER_ERRORS = (StateError, LocalizeError, TopologyError, TargetError)


class UsageError(SpireFabricError):
    """Bad input from the user: printed as one message, exit status 2, nothing written."""


def add_deployment_args(parser: argparse.ArgumentParser, *, settings: bool = False) -> None:
    """--topology, --target, --state-dir; with ``settings`` the options a target keeps.
    Every one left out takes what the deployment recorded."""
    parser.add_argument(
        "--topology",
        default=None,
        metavar="PRESET|FILE.yaml",
        help=f"a preset ({', '.join(PRESET_NAMES)}; scale:agents=N,workloads=N,running=N,"
        "entries=N on the local target) or a topology YAML file (default: the "
        "deployment's own, else enterprise)",
    )
    parser.add_argument(
        "--target",
        choices=TARGET_NAMES,
        default=None,
        help="where the topology runs: local processes or its Kubernetes clusters (default: "
        "where the deployment is, else local)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the deployment's state lives (default: ~/.local/state/spire-fabric/"
        "<topology>, <topology>@kubernetes for the clusters)",
    )
    if not settings:
        return
    g = parser.add_argument_group("local target")
    g.add_argument(
        "--port-base",
        type=int,
        default=None,
        help=f"shift every local port by PORT_BASE-{DEFAULT_PORT_BASE} (first default "
        f"{DEFAULT_PORT_BASE}: upstream 31081/31443, downstream 32081/32443)",
    )
    g.add_argument(
        "--datastore",
        default=None,
        metavar="URL",
        help="mysql://user:pass@host:port/db_{server}, postgres://…, or sqlite (first "
        "default: SQLite)",
    )
    k = parser.add_argument_group("kubernetes target")
    k.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (first default: $KUBECONFIG)"
    )
    k.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="CLUSTER=CONTEXT",
        help="the kubeconfig context of a topology cluster (repeatable); first default: the "
        "source design's upstream-spire-cluster / downstream-spire-cluster",
    )
    k.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="ROLE=IMAGE",
        help="override an image (a tag or a digest, name@sha256:…): server, agent, "
        "controller_manager, workload, csi_driver, csi_registrar, agent_init, mysql, "
        "prometheus, alertmanager",
    )
    k.add_argument(
        "--workload-socket",
        choices=("csi", "host-path"),
        default=None,
        help="how pods reach the agent socket (first default: the topology's, csi)",
    )
    k.add_argument(
        "--timeout", type=float, default=None, help="seconds to wait for each rollout (300)"
    )


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"{flag} {v!r}: expected KEY=VALUE")
        out[key] = value
    return out


def options_from(args: argparse.Namespace) -> DeploymentOptions:
    images = _pairs(getattr(args, "image", []), "--image")
    refused = unknown_image_role(images)
    if refused:
        raise UsageError(refused)  # before any cluster is contacted
    return DeploymentOptions(
        port_base=getattr(args, "port_base", None),
        datastore=getattr(args, "datastore", None),
        kubeconfig=getattr(args, "kubeconfig", None),
        contexts=_pairs(getattr(args, "context", []), "--context"),
        images=images,
        workload_socket=getattr(args, "workload_socket", None),
        timeout=getattr(args, "timeout", None),
    )


def resolve_topology(value: str) -> Topology:
    """A preset name, else a YAML file; any problem becomes one UsageError."""
    if is_preset_spelling(value):
        try:
            return preset(value)
        except (KeyError, ValueError) as e:
            raise UsageError(f"--topology {value}: {e.args[0] if e.args else e}") from e
    path = Path(value)
    if not path.suffix and not path.exists():
        raise UsageError(
            f"--topology {value!r}: not a preset ({', '.join(PRESET_NAMES)}, scale:...) "
            "and no such file"
        )
    if not path.is_file():
        raise UsageError(f"--topology {value!r}: no such file")
    try:
        return load_topology(path)
    except TopologyError as e:
        raise UsageError(f"--topology {value}: {e}") from e


@dataclass
class Chosen:
    """The deployment the arguments name: its target, state directory and topology."""

    provider: TargetProvider
    state_dir: Path
    topology: Topology | None  # None: a name with no deployment and no --topology given
    options: DeploymentOptions

    def create(self) -> Deployment:
        """For `plan` and `up` (recorded settings, the given options on top)."""
        topology = self.topology or resolve_topology("enterprise")
        try:
            return self.provider.create(topology, self.state_dir, self.options)
        except _USER_ERRORS as err:
            raise UsageError(str(err)) from err

    def open(self) -> Deployment:
        """A deployment `up` made (`status`, `verify`, `down`, …)."""
        if not self.provider.holds(self.state_dir):
            name = self.topology.name if self.topology else "enterprise"
            raise UsageError(
                f"no {self.provider.name} deployment of {name!r} in {self.state_dir}; run "
                "`python -m spire_fabric.deploy up` first or pass --state-dir / --target"
            )
        try:
            return self.provider.open(self.state_dir)
        except _USER_ERRORS as err:
            raise UsageError(str(err)) from err


def choose(args: argparse.Namespace) -> Chosen:
    """Topology, target and state directory from the arguments and what is recorded: a
    given --topology is read first (its name finds the state); else the deployment in
    --state-dir (or the default one of enterprise) tells its own topology."""
    given = resolve_topology(args.topology) if args.topology else None
    options = options_from(args)
    if (
        args.state_dir is not None
        and Path(args.state_dir).exists()
        and not Path(args.state_dir).is_dir()
    ):
        raise UsageError(f"--state-dir {args.state_dir}: not a directory")
    try:
        p, state_dir = choose_target(args.target, given.name if given else None, args.state_dir)
        refuse_foreign_options(p, options)
        topology = given
        if topology is None and p.holds(state_dir):
            topology = p.recorded_topology(state_dir)
    except _USER_ERRORS as err:
        raise UsageError(str(err)) from err
    return Chosen(p, state_dir, topology, options)
