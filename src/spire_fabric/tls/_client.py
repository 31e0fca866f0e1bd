"""mTLS client helpers: a raw connection, urllib, and httpx."""

from __future__ import annotations

import socket
import ssl
import urllib.request
from typing import TYPE_CHECKING, Any

from spire_fabric.identity import SpiffeId, X509BundleSource, X509SvidSource

from ._authorize import Authorizer
from ._context import SpiffeClientContext, mtls_client_context
from ._peer import peer_spiffe_id

if TYPE_CHECKING:
    import spiffe

__all__ = ["connect_mtls", "httpx_ssl_context", "mtls_https_handler", "mtls_urlopen"]


def connect_mtls(
    host: str, port: int, context: SpiffeClientContext, *, timeout: float = 10.0
) -> tuple[ssl.SSLSocket, SpiffeId]:
    """Open a TCP connection, complete mutual TLS and return the socket and the peer ID.

    ``context`` comes from ``mtls_client_context`` and is meant to be reused: it builds a
    new OpenSSL context only when the SVID or bundles rotate.
    """
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        conn = context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return conn, peer_spiffe_id(conn)


def mtls_https_handler(context: SpiffeClientContext) -> urllib.request.HTTPSHandler:
    """A urllib handler whose HTTPS connections use mutual TLS with the SPIFFE check."""
    return urllib.request.HTTPSHandler(context=context)


def mtls_urlopen(
    url: str | urllib.request.Request,
    context: SpiffeClientContext,
    *,
    data: bytes | None = None,
    timeout: float = 10.0,
) -> Any:
    """``urllib.request.urlopen`` over mutual TLS; refuses a server the authorizer rejects.

    Redirects are followed only within what ``context`` authorizes, since every new
    connection runs the same check.
    """
    opener = urllib.request.build_opener(mtls_https_handler(context))
    return opener.open(url, data=data, timeout=timeout)


def httpx_ssl_context(
    svid_source: X509SvidSource | spiffe.X509Source | spiffe.X509Svid,
    bundle_source: X509BundleSource | spiffe.X509Source | spiffe.X509BundleSet | spiffe.X509Bundle,
    authorizer: Authorizer,
) -> SpiffeClientContext:
    """An SSLContext for ``httpx.Client(verify=ctx)`` / ``httpx.AsyncClient(verify=ctx)``.

    httpx (through httpcore) opens connections with ``wrap_socket`` (sync) or anyio's
    ``wrap_bio`` + ``do_handshake`` (async); both run the SPIFFE check of this context
    inside the handshake. Where a transport builds TLS another way, call
    ``verify_peer(ssl_object, bundle_source, authorizer)`` on
    ``response.extensions["network_stream"].get_extra_info("ssl_object")``.
    """
    return mtls_client_context(svid_source, bundle_source, authorizer)
