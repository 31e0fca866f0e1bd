"""The Kubernetes target: a topology applied to real clusters with the official client
(server-side apply as ``spire-fabric``, rollout waits that explain themselves), verified
through the same :class:`~spire_fabric.runtime.Deployment` interface as the local target."""

from spire_fabric.runtime.kubernetes._clusters import DEFAULT_CONTEXTS
from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.runtime.kubernetes._objects import FIELD_MANAGER
from spire_fabric.runtime.kubernetes._state import KubernetesSettings, default_state_dir
from spire_fabric.runtime.kubernetes.deployment import KubernetesDeployment

__all__ = [
    "DEFAULT_CONTEXTS",
    "FIELD_MANAGER",
    "KubernetesDeployment",
    "KubernetesSettings",
    "KubernetesTargetError",
    "default_state_dir",
]
