"""Mutual TLS with X509-SVIDs on the stdlib ``ssl`` module, as go-spiffe's ``spiffetls``.

Contexts from here work anywhere an ``ssl.SSLContext`` is accepted. They follow SVID and
bundle rotation without a restart, and check every peer inside the handshake: its chain
against the bundle of the peer ID's own trust domain, then an :data:`Authorizer`.

Errors::

    AuthorizationError(Exception)          an authorizer refused a verified peer
    ssl.SSLCertVerificationError
    └── PeerRejectedError                  the SPIFFE check refused the peer
"""

from ._authorize import (
    Authorizer,
    authorize_any,
    authorize_id,
    authorize_member_of,
    authorize_one_of,
    authorize_predicate,
)
from ._client import connect_mtls, httpx_ssl_context, mtls_https_handler, mtls_urlopen
from ._context import (
    SpiffeClientContext,
    SpiffeServerContext,
    mtls_client_context,
    mtls_server_context,
    tls_client_context,
    tls_server_context,
)
from ._errors import AuthorizationError, PeerRejectedError
from ._peer import peer_chain, peer_spiffe_id, verify_peer
from ._server import MtlsServer, TlsThreadingServer, serve_mtls_threaded, start_mtls_server
from ._sources import X509SvidSource, all_x509_bundles

__all__ = [
    "AuthorizationError",
    "Authorizer",
    "MtlsServer",
    "PeerRejectedError",
    "SpiffeClientContext",
    "SpiffeServerContext",
    "TlsThreadingServer",
    "X509SvidSource",
    "all_x509_bundles",
    "authorize_any",
    "authorize_id",
    "authorize_member_of",
    "authorize_one_of",
    "authorize_predicate",
    "connect_mtls",
    "httpx_ssl_context",
    "mtls_client_context",
    "mtls_https_handler",
    "mtls_server_context",
    "mtls_urlopen",
    "peer_chain",
    "peer_spiffe_id",
    "serve_mtls_threaded",
    "start_mtls_server",
    "tls_client_context",
    "tls_server_context",
    "verify_peer",
]
