"""Two real Kubernetes clusters on one machine for tests: `upstream-spire-cluster` and
`downstream-spire-cluster`.

Built here from Go modules (Kubernetes, etcd, CoreDNS, spire-controller-manager; cached by
version under `~/.cache/spire-fabric/`), with images written as OCI tarballs and loaded into
each node's containerd. Each cluster has its own control plane and its own node (kubelet,
containerd, kube-proxy) in a network namespace of its own; pod traffic is fenced to the
machine. Needs root. By hand: `scripts/kube-clusters up|status|down`. See
docs/kubernetes-test-clusters.md.
"""

from spire_fabric.testing.kubernetes._build import (
    COREDNS_VERSION,
    ETCD_VERSION,
    KUBERNETES_VERSION,
    SPIRE_CONTROLLER_MANAGER_VERSION,
    KubeBuildError,
)
from spire_fabric.testing.kubernetes._cluster import (
    CLUSTERS,
    ClusterSpec,
    KubeClusterError,
    base_dir,
    down,
    kubeconfig_path,
    leftovers,
    load_image,
    status,
    up,
)
from spire_fabric.testing.kubernetes._installer import (
    INSTALLER_IMAGES,
    installer_args,
    installer_images,
    load_installer_images,
)

__all__ = [
    "CLUSTERS",
    "COREDNS_VERSION",
    "ETCD_VERSION",
    "INSTALLER_IMAGES",
    "KUBERNETES_VERSION",
    "SPIRE_CONTROLLER_MANAGER_VERSION",
    "ClusterSpec",
    "KubeBuildError",
    "KubeClusterError",
    "base_dir",
    "down",
    "installer_args",
    "installer_images",
    "kubeconfig_path",
    "leftovers",
    "load_image",
    "load_installer_images",
    "status",
    "up",
]
