"""`attach(name)`: a running deployment by its topology's name, for code and notebooks.

Why by name: a notebook or dashboard should not need to know where a target keeps its
state. Each target records its deployments under the state root
(``$XDG_STATE_HOME/spire-fabric/<name>`` locally, ``<name>@kubernetes`` for clusters), so
the name is enough; :func:`~spire_fabric.runtime.targets.choose_target` decides, as the
CLI does.
"""

from __future__ import annotations

from pathlib import Path

from spire_fabric.runtime.deployment import Deployment
from spire_fabric.runtime.registry import choose_target
from spire_fabric.runtime.targets import TargetError
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

    ``target`` None finds the deployment that is there (local first);
    ``attach("enterprise", target="kubernetes")`` asks for the clusters' one.

    Raises :class:`~spire_fabric.runtime.targets.TargetError` naming the directory it
    looked in when there is no such deployment.
    """
    path = Path(state_dir) if state_dir is not None else None
    p, where = choose_target(target, name, path)
    if not p.holds(where):
        raise TargetError(f"no {p.name} deployment of {name!r} in {where}")
    deployment = p.open(where)
    if deployment.name != name and state_dir is None:
        raise TargetError(f"{where} holds topology {deployment.name!r}, not {name!r}")
    return deployment
