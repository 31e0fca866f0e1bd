"""The one error of the Kubernetes target: a message that names the cluster, the object and
what to do, because the person reading it has two clusters and dozens of objects."""

from __future__ import annotations

from spire_fabric.runtime.core.errors import UpError


class KubernetesTargetError(UpError):
    """The Kubernetes target cannot do what was asked (bad context, no permission, a
    rollout that does not finish, an object that belongs to someone else). An
    :class:`~spire_fabric.runtime.core.UpError`, as every target's failure of `up` is."""
