"""What the Kubernetes target's parts (installer, status) need of a deployment: the public
:class:`~spire_fabric.runtime.Deployment`, and the clusters it runs in. A protocol, so
those parts do not import the class that composes them."""

from __future__ import annotations

from typing import Protocol

from spire_fabric.runtime.deployment import Deployment
from spire_fabric.runtime.kubernetes._clusters import ClusterApi

__all__ = ["ClusterDeployment"]


class ClusterDeployment(Deployment, Protocol):
    """A deployment, and the clusters it runs in (by the topology's cluster names)."""

    @property
    def clusters(self) -> dict[str, ClusterApi]:
        """Connections to the topology's clusters."""
        ...

    def start_identity_probes(self) -> None:
        """Start the probe pods `verify` will read registered-only workloads through."""
        ...
