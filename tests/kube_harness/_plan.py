"""The address plan of the two test clusters: names, node counts and private ranges.

All private ranges unused here; N = 1 upstream, 2 downstream; node k = 1, 2, ...:
- node link 10.250.N.4(k-1)/30: host side `sfk-<short>[k]0` = .4(k-1)+1 (the first node's
  is the API server's address), node `eth0` = .4(k-1)+2, default route via the host side;
- pods 10.251.N.0/24, a /26 per node (node k: 10.251.N.64(k-1)/26) on a bridge inside the
  node namespace; the host routes each node's /26 through that node's link, so pods of one
  cluster talk to each other by address across nodes (no NAT between them); traffic that
  leaves the cluster's pod range is masqueraded to the node address;
- services 10.252.N.0/24 (API 10.252.N.1, DNS 10.252.N.10), routed from the host via the
  first node.

Pure values: nothing here touches the machine, so the unit tests check the plan as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spire_fabric.errors import SpireFabricError

COMMENT = "spire-fabric-kube"
BASE_ENV = "SPIRE_FABRIC_KUBE_DIR"
DEFAULT_BASE = Path("/var/lib/spire-fabric-kube")
CLUSTER_DOMAIN = "cluster.local"
STORAGE_CLASS = "sfk-local"
# Retained volumes are not reused after their claim is gone (as in a real cluster without
# a provisioner), so there are enough for many up/down cycles of every preset in one run.
PV_COUNT = 24
# Images every node gets at start; the rest are loaded on demand with `load_image`.
# kube-network-policies enforces NetworkPolicies on every node (`_netpol`).
NODE_IMAGES = ("pause", "coredns", "python", "kube-network-policies")

Say = Callable[[str], None]


class KubeClusterError(SpireFabricError, RuntimeError):
    """The test clusters could not be brought up, reached or torn down."""


# The cluster's /24 pod range is split into /26 per node, and the cluster's /24 of node links
# into /30 per node: four nodes fit in both.
MAX_NODES = 4
_POD_PREFIX = 26


@dataclass(frozen=True)
class NodeSpec:
    """Node `k` (1-based) of a cluster: its names and its addresses.

    The first node keeps the names and the directory layout of the one-node harness
    (`downstream-node`, namespace `sfk-down`, link `sfk-down0`, files in the cluster's
    directory), so tooling and docs written for one node stay right for it; node k > 1 adds
    k to each name (`downstream-node-2`, `sfk-down2`, `sfk-down20`, `<cluster dir>/<name>`).
    """

    cluster: ClusterSpec
    k: int

    @property
    def _suffix(self) -> str:
        return "" if self.k == 1 else str(self.k)

    @property
    def name(self) -> str:
        base = f"{self.cluster.short}stream-node"
        return base if self.k == 1 else f"{base}-{self.k}"

    @property
    def link_cidr(self) -> str:
        return f"10.250.{self.cluster.index}.{4 * (self.k - 1)}/30"

    @property
    def host_ip(self) -> str:
        """The host side of this node's link: the node's default gateway."""
        return f"10.250.{self.cluster.index}.{4 * (self.k - 1) + 1}"

    @property
    def node_ip(self) -> str:
        return f"10.250.{self.cluster.index}.{4 * (self.k - 1) + 2}"

    @property
    def pod_cidr(self) -> str:
        size = 2 ** (32 - _POD_PREFIX)
        return f"10.251.{self.cluster.index}.{size * (self.k - 1)}/{_POD_PREFIX}"

    @property
    def netns(self) -> str:
        return f"sfk-{self.cluster.short}{self._suffix}"

    @property
    def host_veth(self) -> str:
        return f"{self.netns}0"

    @property
    def peer_veth(self) -> str:
        """The node side's name on the host, for the moment before it moves into the node."""
        return f"{self.netns}1"

    @property
    def cgroup(self) -> str:
        base = f"sfk-{self.cluster.short}stream"
        return base if self.k == 1 else f"{base}-{self.k}"

    def dir(self, cluster_dir: Path) -> Path:
        return cluster_dir if self.k == 1 else cluster_dir / self.name

    def log_prefix(self) -> str:
        return "" if self.k == 1 else f"{self.name}."


@dataclass(frozen=True)
class ClusterSpec:
    """One test cluster: its name, its number N in the address plan, and how many nodes.

    The properties without a node (`node_ip`, `node_name`, `netns`, ...) are the first
    node's: the API server listens on the host side of the first node's link, and the other
    nodes reach it through their default route to the host, where it is a local address.
    """

    name: str
    short: str
    index: int
    nodes: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= MAX_NODES:
            raise KubeClusterError(
                f"{self.name}: {self.nodes} nodes; between 1 and {MAX_NODES} fit the address "
                f"plan (a /{_POD_PREFIX} of pods and a /30 link per node)")

    def node(self, k: int) -> NodeSpec:
        if not 1 <= k <= MAX_NODES:
            raise KubeClusterError(f"{self.name}: no node {k} in the address plan")
        return NodeSpec(self, k)

    @property
    def node_specs(self) -> tuple[NodeSpec, ...]:
        return tuple(self.node(k) for k in range(1, self.nodes + 1))

    @property
    def possible_nodes(self) -> tuple[NodeSpec, ...]:
        """Every node the address plan allows: what teardown and `leftovers` look for."""
        return tuple(self.node(k) for k in range(1, MAX_NODES + 1))

    @property
    def host_ip(self) -> str:
        return self.node(1).host_ip

    @property
    def node_ip(self) -> str:
        return self.node(1).node_ip

    @property
    def link_cidr(self) -> str:
        return f"10.250.{self.index}.0/24"

    @property
    def pod_cidr(self) -> str:
        return f"10.251.{self.index}.0/24"

    @property
    def service_cidr(self) -> str:
        return f"10.252.{self.index}.0/24"

    @property
    def api_service_ip(self) -> str:
        return f"10.252.{self.index}.1"

    @property
    def dns_ip(self) -> str:
        return f"10.252.{self.index}.10"

    @property
    def netns(self) -> str:
        return self.node(1).netns

    @property
    def host_veth(self) -> str:
        return self.node(1).host_veth

    @property
    def node_name(self) -> str:
        return self.node(1).name

    @property
    def cgroup(self) -> str:
        return self.node(1).cgroup

    @property
    def api_url(self) -> str:
        return f"https://{self.host_ip}:6443"

    def port(self, offset: int) -> int:
        # Below the 30000-60000 loopback range other tests on this machine use.
        return 21000 + 100 * self.index + offset

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "short": self.short, "index": self.index,
                "nodes": self.nodes}


# Upstream keeps one node; downstream has three, one per SPIRE agent of the downstream
# server: k8s_psat names an agent after its node's UID, so two agents of one server on one
# node would share a SPIFFE ID and evict each other.
CLUSTERS = (
    ClusterSpec("upstream-spire-cluster", "up", 1, nodes=1),
    ClusterSpec("downstream-spire-cluster", "down", 2, nodes=3),
)
OUTSIDE_RANGE = "10.250.0.0/15"  # node links, pods
SERVICE_RANGE = "10.252.0.0/16"


def base_dir() -> Path:
    return Path(os.environ.get(BASE_ENV) or DEFAULT_BASE)


def kubeconfig_path() -> Path:
    return base_dir() / "kubeconfig"


# ---------------------------------------------------------------------------- state
