"""`attach(name)`: a running deployment by its topology's name, for code and notebooks.

Why by name: a notebook or dashboard should not need to know where a target keeps its
state. The local target records each deployment under the state root
(``$XDG_STATE_HOME/spire-fabric/<name>``), so the name is enough.
"""

from __future__ import annotations

from pathlib import Path

from spire_fabric.runtime.deployment import Deployment
from spire_fabric.runtime.local import LocalDeployment, StateError, default_state_dir
from spire_fabric.topology import Target

__all__ = ["attach"]


def attach(
    name: str = "enterprise",
    *,
    state_dir: str | Path | None = None,
    target: Target | None = None,
) -> Deployment:
    """The running deployment of topology ``name`` (``up`` must have run).

    >>> d = attach("enterprise")                       # doctest: +SKIP
    >>> with d.server("spire-upstream-server") as api:  # doctest: +SKIP
    ...     print(api.get_bundle().trust_domain)

    ``target`` None finds the local deployment of that name, else the Kubernetes one
    (``attach("enterprise", target="kubernetes")`` asks for the latter).

    Raises :class:`~spire_fabric.runtime.local.StateError` naming the directory it looked
    in when there is no such deployment.
    """
    from spire_fabric.runtime.kubernetes import KubernetesDeployment
    from spire_fabric.runtime.kubernetes import default_state_dir as kube_state_dir

    if target == "kubernetes" or (
        target is None
        and state_dir is None
        and not (default_state_dir(name) / "state.json").exists()
        and kube_state_dir(name).exists()
    ):
        kube_path = Path(state_dir) if state_dir is not None else kube_state_dir(name)
        if not kube_path.exists():
            raise StateError(f"no Kubernetes deployment of {name!r} in {kube_path}")
        return KubernetesDeployment.open(kube_path)
    path = Path(state_dir) if state_dir is not None else default_state_dir(name)
    deployment = LocalDeployment.open(path)
    if deployment.name != name and state_dir is None:
        raise StateError(f"{path} holds topology {deployment.name!r}, not {name!r}")
    return deployment
