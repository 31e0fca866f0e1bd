"""The one error a step of `up` raises, on every target."""

from __future__ import annotations

from spire_fabric.errors import SpireFabricError

__all__ = ["UpError"]


class UpError(SpireFabricError, RuntimeError):
    """A step of `up` failed; the message names the step, the component and why."""
