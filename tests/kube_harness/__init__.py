"""Two real Kubernetes clusters on one machine for our tests: `upstream-spire-cluster` and
`downstream-spire-cluster`. Development tooling of this repository, not shipped.

Built here from Go modules (Kubernetes, kubectl, etcd, CoreDNS, spire-controller-manager;
cached by version under `~/.cache/spire-fabric/` through `spire_fabric.runtime._gobuild`),
with images written as OCI tarballs and loaded into each node's containerd. Each cluster has
its own control plane and its own nodes (kubelet, containerd, kube-proxy), each node in a
network namespace of its own: upstream one node, downstream three (one per SPIRE agent).
Pod traffic is fenced to the machine. Needs root. By hand:
`scripts/kube-clusters up|status|down|deploy-args`. See docs/kubernetes-test-clusters.md.

Modules, by concern: `_plan` (names and address plan), `_host` (state file, lock, commands,
processes), `_network` (node links, the fence), `_control_plane` (certificates, etcd and the
API server's peers), `_node` (containerd, kubelet, kube-proxy), `_objects` (CoreDNS, storage),
`_lifecycle` (up, status, load_image), `_teardown` (down, leftovers), `_build` (Go builds),
`_images` (images; the project image is the shipped `spire_fabric.runtime.images`),
`_installer` (what `deploy` is told).

The tests reach the clusters through `spire_fabric.testing`'s `kube_clusters` fixture, the
same one a user points at their own clusters; tests/kubernetes_clusters/conftest.py makes
this harness provide its kubeconfig.
"""

from kube_harness._build import (
    COREDNS_VERSION,
    ETCD_VERSION,
    KUBERNETES_VERSION,
    SPIRE_CONTROLLER_MANAGER_VERSION,
    KubeBuildError,
    kubectl_path,
)
from kube_harness._installer import (
    INSTALLER_IMAGES,
    deploy_args,
    installer_args,
    installer_images,
    load_installer_images,
)
from kube_harness._lifecycle import load_image, status, up
from kube_harness._plan import (
    CLUSTERS,
    MAX_NODES,
    ClusterSpec,
    KubeClusterError,
    NodeSpec,
    base_dir,
    kubeconfig_path,
)
from kube_harness._teardown import down, leftovers

__all__ = [
    "CLUSTERS",
    "COREDNS_VERSION",
    "ETCD_VERSION",
    "INSTALLER_IMAGES",
    "KUBERNETES_VERSION",
    "MAX_NODES",
    "SPIRE_CONTROLLER_MANAGER_VERSION",
    "ClusterSpec",
    "KubeBuildError",
    "KubeClusterError",
    "NodeSpec",
    "base_dir",
    "deploy_args",
    "down",
    "installer_args",
    "installer_images",
    "kubeconfig_path",
    "kubectl_path",
    "leftovers",
    "load_image",
    "load_installer_images",
    "status",
    "up",
]
