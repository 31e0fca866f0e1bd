"""The SVID a SPIRE server serves its APIs with, as a client sees it in the handshake.

Why from a handshake: that SVID is the server's own (its SVID rotator renews it at half
its life, or at once when the authority it chains to is tainted on that server), and only
the handshake shows which one it presents now. `rotate root` needs it per replica: a
replica still presenting an SVID under the old root fails every agent once that root is
revoked. pyOpenSSL, not the stdlib: Python 3.11's ssl gives the peer's leaf only, and what
the SVID chains to needs the whole chain it presents."""

from __future__ import annotations

import select
import socket
import time

from cryptography import x509
from OpenSSL import SSL

from spire_fabric.identity import X509Bundle, spire_server_id, verify_x509_svid

__all__ = ["served_server_svid"]

_HANDSHAKE_TIMEOUT = 10.0


def served_server_svid(host: str, port: int, bundle: X509Bundle) -> tuple[x509.Certificate, ...]:
    """The chain (leaf first) the SPIRE server at ``host:port`` presents, verified against
    ``bundle`` and as that trust domain's server ID; ValueError (an X509SvidError) when it
    does not verify, OSError/TimeoutError when the server cannot be reached."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_alpn_protos([b"h2"])  # gRPC servers refuse clients without it
    with socket.create_connection((host, port), timeout=_HANDSHAKE_TIMEOUT) as raw:
        raw.setblocking(False)
        conn = SSL.Connection(context, raw)
        conn.set_connect_state()
        deadline = time.monotonic() + _HANDSHAKE_TIMEOUT
        while True:
            try:
                conn.do_handshake()
                break
            except (SSL.WantReadError, SSL.WantWriteError) as want:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no TLS handshake with {host}:{port}") from None
                writing = isinstance(want, SSL.WantWriteError)
                select.select([] if writing else [raw], [raw] if writing else [], [], 1.0)
        chain = tuple(conn.get_peer_cert_chain(as_cryptography=True) or ())
    spiffe_id, _ = verify_x509_svid(chain, bundle)
    if spiffe_id != spire_server_id(bundle.trust_domain):
        raise ValueError(f"{host}:{port} presents {spiffe_id}, not the SPIRE server's ID")
    return chain
