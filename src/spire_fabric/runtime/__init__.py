"""Targets that make a topology real, and the SPIRE binaries they run.

Names are resolved lazily so `python -m spire_fabric.runtime.binaries` does not import
the module twice (runpy warns when the package already imported it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spire_fabric.runtime.binaries import (
        SPIRE_VERSION,
        SpireBinaries,
        SpireBinariesError,
        ensure_spire,
        spire_cache_dir,
    )
    from spire_fabric.runtime.deployment import (
        Change,
        ComponentHealth,
        Deployment,
        DeploymentPlan,
        StepReporter,
        WorkloadAddress,
    )

_INTERFACE = (
    "Change",
    "ComponentHealth",
    "Deployment",
    "DeploymentPlan",
    "StepReporter",
    "WorkloadAddress",
)

__all__ = [
    "SPIRE_VERSION",
    "Change",
    "ComponentHealth",
    "Deployment",
    "DeploymentPlan",
    "SpireBinaries",
    "SpireBinariesError",
    "StepReporter",
    "WorkloadAddress",
    "ensure_spire",
    "spire_cache_dir",
]


def __getattr__(name: str) -> Any:
    if name in _INTERFACE:
        from spire_fabric.runtime import deployment

        return getattr(deployment, name)
    if name in __all__:
        from spire_fabric.runtime import binaries

        return getattr(binaries, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
