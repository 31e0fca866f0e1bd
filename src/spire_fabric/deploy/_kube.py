"""Options of the Kubernetes target and opening a Kubernetes deployment for a subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path

from spire_fabric.deploy._common import UsageError
from spire_fabric.runtime.kubernetes import (
    KubernetesDeployment,
    KubernetesSettings,
    KubernetesTargetError,
    default_state_dir,
)
from spire_fabric.topology import Topology


def add_kube_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("kubernetes target")
    g.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG)")
    g.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="CLUSTER=CONTEXT",
        help="the kubeconfig context of a topology cluster (repeatable); default: the "
        "source design's upstream-spire-cluster / downstream-spire-cluster",
    )
    g.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="ROLE=IMAGE",
        help="override an image: server, agent, controller_manager, workload, mysql",
    )
    g.add_argument(
        "--workload-socket",
        choices=("csi", "host-path"),
        default=None,
        help="how pods reach the agent socket (default: the topology's, csi)",
    )
    g.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for each rollout"
    )


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"{flag} {v!r}: expected KEY=VALUE")
        out[key] = value
    return out


def settings_from(args: argparse.Namespace) -> KubernetesSettings:
    return KubernetesSettings(
        kubeconfig=args.kubeconfig,
        contexts=_pairs(args.context, "--context"),
        images=_pairs(args.image, "--image"),
        workload_socket=args.workload_socket,
        timeout=args.timeout,
    )


def kube_state_dir(args: argparse.Namespace, name: str) -> Path:
    return getattr(args, "state_dir", None) or default_state_dir(name)


def create(args: argparse.Namespace, topology: Topology) -> KubernetesDeployment:
    try:
        return KubernetesDeployment.create(
            topology, settings_from(args), kube_state_dir(args, topology.name)
        )
    except KubernetesTargetError as err:
        raise UsageError(str(err)) from err


def open_kube(args: argparse.Namespace) -> KubernetesDeployment:
    name = getattr(args, "topology", None) or "enterprise"
    try:
        return KubernetesDeployment.open(kube_state_dir(args, name))
    except KubernetesTargetError as err:
        raise UsageError(str(err)) from err
