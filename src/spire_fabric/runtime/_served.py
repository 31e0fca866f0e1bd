"""The SVID a SPIRE server serves its APIs with, as a client sees it in the handshake.

Why from a handshake: that SVID is the server's own (its SVID rotator renews it at half
its life, or at once when the authority it chains to is tainted on that server), and only
the handshake shows which one it presents now. `rotate root` needs it per replica: a
replica still presenting an SVID under the old root fails every agent once that root is
revoked."""

from __future__ import annotations

import socket

from cryptography import x509

from spire_fabric.identity import X509Bundle, spire_server_id
from spire_fabric.tls import authorize_id, tls_client_context

__all__ = ["served_server_svid"]


def served_server_svid(host: str, port: int, bundle: X509Bundle) -> x509.Certificate:
    """The leaf the server at ``host:port`` presents, from a handshake verified against
    ``bundle`` and authorized as that trust domain's SPIRE server (Python's ssl gives the
    leaf only, not the chain)."""
    context = tls_client_context(bundle, authorize_id(spire_server_id(bundle.trust_domain)))
    context.set_alpn_protocols(["h2"])  # gRPC servers refuse clients without it
    with socket.create_connection((host, port), timeout=10) as raw, \
            context.wrap_socket(raw) as tls:  # fmt: skip
        der = tls.getpeercert(binary_form=True)
    assert der is not None  # verified inside the handshake: a peer certificate exists
    return x509.load_der_x509_certificate(der)
