"""The root of every error spire_fabric raises on purpose.

    from spire_fabric.errors import SpireFabricError

    try:
        ...
    except SpireFabricError as err:  # any spire_fabric failure, whichever room raised it
        ...

Each room keeps its own tree under this root (`IdentityError`, `WorkloadApiError`,
`SpireServerError`, `FederationError`, `AuthorizationError`, ...), and keeps the builtin
bases it always had (`IdentityError` is still a `ValueError`, `PeerRejectedError` still an
`ssl.SSLCertVerificationError`), so existing `except` clauses keep working. Where a lower
error (gRPC, OpenSSL, YAML, OS) is translated, it is kept as `__cause__`.
"""

from __future__ import annotations

__all__ = ["SpireFabricError"]


class SpireFabricError(Exception):
    """Base class of every public spire_fabric error."""
