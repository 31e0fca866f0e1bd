"""The registry of targets: the target is chosen once, here, from the arguments and what a
deployment recorded. Nothing above this module asks which target it runs on."""

from __future__ import annotations

from pathlib import Path

from spire_fabric.runtime.targets import (
    OPTION_FLAGS,
    DeploymentOptions,
    TargetError,
    TargetProvider,
)
from spire_fabric.topology import Target

__all__ = ["TARGET_NAMES", "choose_target", "provider", "refuse_foreign_options"]

TARGET_NAMES: tuple[Target, ...] = ("local", "kubernetes")


def provider(name: Target) -> TargetProvider:
    """The provider of target ``name``."""
    if name == "local":
        from spire_fabric.runtime.local.provider import LocalProvider

        return LocalProvider()
    if name == "kubernetes":
        from spire_fabric.runtime.kubernetes.provider import KubernetesProvider

        return KubernetesProvider()
    raise TargetError(f"unknown target {name!r} (one of {', '.join(TARGET_NAMES)})")



def choose_target(
    target: Target | None, topology_name: str | None, state_dir: Path | None
) -> tuple[TargetProvider, Path]:
    """The target and state directory the arguments mean. A target not given is the one
    whose deployment is there: in ``state_dir``, else in the default directory of the
    topology (local first); a new deployment is local."""
    name = topology_name or "enterprise"
    if target is not None:
        p = provider(target)
        path = state_dir or p.state_dir(name)
        for other in TARGET_NAMES:
            if other != target and state_dir is not None and provider(other).holds(path):
                raise TargetError(
                    f"{path} holds a {other} deployment, not a {target} one; pass another "
                    "--state-dir or leave --target out"
                )
        return p, path
    for candidate in TARGET_NAMES:
        p = provider(candidate)
        path = state_dir or p.state_dir(name)
        if p.holds(path):
            return p, path
    local = provider("local")
    return local, state_dir or local.state_dir(name)


def refuse_foreign_options(p: TargetProvider, options: DeploymentOptions) -> None:
    """A flag that does not apply to the target is refused, never ignored."""
    foreign = [o for o in options.given() if o not in p.options]
    if foreign:
        flags = ", ".join(OPTION_FLAGS[o] for o in foreign)
        raise TargetError(f"{flags} does not apply to --target {p.name}")
