"""What the installer needs to run on the test clusters: the images built here (by role,
as ``deploy --image`` takes them) and the hostPath socket, since the SPIFFE CSI driver
cannot be built here (see docs/kubernetes-test-clusters.md)."""

from __future__ import annotations

import shlex
from collections.abc import Callable

from kube_harness._lifecycle import load_image
from kube_harness._plan import CLUSTERS, kubeconfig_path

# deploy's image roles -> the test images that fill them
INSTALLER_IMAGES = {
    "server": "spire-server",
    "agent": "spire-agent",
    "controller_manager": "spire-controller-manager",
    "workload": "spire-fabric",
    # chown in the agent's init container: the project image is Debian (coreutils)
    "agent_init": "spire-fabric",
    "mysql": "mariadb",
    "prometheus": "prometheus",
    "alertmanager": "alertmanager",
}


# the sidecars' roles, filled only while the Kubernetes target runs sidecars (the one
# switch, `spire_fabric.topology.sidecars_on_kubernetes`): off, nothing more is built
SIDECAR_IMAGES = {
    "ghostunnel": "ghostunnel",
    # the inventory example's nginx (inventory and catalog)
    "nginx": "spire-fabric-nginx",
}


def _roles() -> dict[str, str]:
    from spire_fabric.topology import sidecars_on_kubernetes

    return {**INSTALLER_IMAGES, **(SIDECAR_IMAGES if sidecars_on_kubernetes() else {})}


def installer_images() -> dict[str, str]:
    """role -> image reference of the test images."""
    from kube_harness._images import image_set

    images = image_set()
    return {role: images[name].ref for role, name in _roles().items()}


def load_installer_images(say: Callable[[str], None] = print) -> None:
    """Every installer image into every test cluster (containerd skips what it has)."""
    for spec in CLUSTERS:
        for name in dict.fromkeys(_roles().values()):
            load_image(spec.name, name, say)


def installer_args() -> list[str]:
    """The `deploy` arguments that point the installer at the test clusters."""
    args = ["--kubeconfig", str(kubeconfig_path()), "--workload-socket", "host-path"]
    for role, ref in installer_images().items():
        args += ["--image", f"{role}={ref}"]
    return args


def deploy_args(say: Callable[[str], None] = print) -> str:
    """Load the installer's images into the test nodes, then return `installer_args()`
    shell-quoted on one line, to paste after `deploy … --target kubernetes`."""
    load_installer_images(say)
    return shlex.join(installer_args())
