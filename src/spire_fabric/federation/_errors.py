"""Errors of the federation package."""

from __future__ import annotations

from spire_fabric.errors import SpireFabricError

__all__ = ["FederationError"]


class FederationError(SpireFabricError):
    """A bundle endpoint could not be reached, did not authenticate, or sent a bad bundle.

    The message names the URL and the step that failed; the cause is chained.
    """
