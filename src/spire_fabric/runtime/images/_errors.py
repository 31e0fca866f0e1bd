"""The one error of the image builder."""

from __future__ import annotations

from spire_fabric.errors import SpireFabricError


class ImageBuildError(SpireFabricError):
    """The project image cannot be built; the message names what to install or pass."""
