"""Errors of the tls package.

::

    AuthorizationError(SpireFabricError)           raised by an Authorizer: the peer is not wanted
    ssl.SSLCertVerificationError, SpireFabricError
    └── PeerRejectedError                    the handshake completed but the SPIFFE check failed

PeerRejectedError is an ``ssl.SSLCertVerificationError`` (so an ``ssl.SSLError``, an
``OSError`` and a ``ValueError``) on purpose: every server loop and HTTP client that already
copes with a failed handshake (socketserver, asyncio, http.client, urllib3, anyio) treats our
refusal the same way, closing the connection instead of crashing.
"""

from __future__ import annotations

import ssl

from spire_fabric.errors import SpireFabricError
from spire_fabric.identity import SpiffeId

__all__ = ["AuthorizationError", "PeerRejectedError"]


class AuthorizationError(SpireFabricError):
    """An authorizer refused a verified peer; the message says what was expected."""


class PeerRejectedError(ssl.SSLCertVerificationError, SpireFabricError):
    """The peer's X509-SVID did not verify against its own trust domain, or was not authorized.

    ``peer_id`` is the ID the peer claimed (None if its certificate had none); the cause
    (an ``X509SvidError`` or ``AuthorizationError``) is chained as ``__cause__``.
    """

    def __init__(self, message: str, peer_id: SpiffeId | None = None) -> None:
        super().__init__(message)
        self.peer_id = peer_id
        self.verify_message = message

    def __str__(self) -> str:
        return self.verify_message
