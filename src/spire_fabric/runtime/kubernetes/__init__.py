"""The Kubernetes target: a topology applied to real clusters with the official client
(server-side apply as ``spire-fabric``, rollout waits that explain themselves), verified
through the same :class:`~spire_fabric.runtime.Deployment` interface as the local target.

Names that need the official client are imported on first use: the registry asks this
package whether a state directory is a Kubernetes one on every command, and a local `plan`
must not pay the client's import (0.3-0.7 s of CPU) for that question.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.runtime.kubernetes._state import KubernetesSettings, default_state_dir

if TYPE_CHECKING:
    from spire_fabric.runtime.kubernetes._clusters import DEFAULT_CONTEXTS
    from spire_fabric.runtime.kubernetes._objects import FIELD_MANAGER
    from spire_fabric.runtime.kubernetes.deployment import KubernetesDeployment

_ON_FIRST_USE = {
    "DEFAULT_CONTEXTS": "_clusters",
    "FIELD_MANAGER": "_objects",
    "KubernetesDeployment": "deployment",
}

__all__ = [
    "DEFAULT_CONTEXTS",
    "FIELD_MANAGER",
    "KubernetesDeployment",
    "KubernetesSettings",
    "KubernetesTargetError",
    "default_state_dir",
]


def __getattr__(name: str) -> Any:
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
