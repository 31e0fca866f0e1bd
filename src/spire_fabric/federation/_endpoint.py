"""Bundle endpoint server (profile https_spiffe), as go-spiffe's ``federation.Handler``.

Serves the current SPIFFE bundle of one trust domain over TLS with the current SVID, so
both the bundle and the server certificate follow rotation without a restart.
"""

from __future__ import annotations

import dataclasses
import http.server
import logging
import threading
from datetime import timedelta

from spire_fabric.identity import (
    BundleError,
    SpiffeBundle,
    TrustDomain,
    X509BundleSource,
    X509SvidSource,
    as_trust_domain,
)
from spire_fabric.tls import MtlsServer, TlsThreadingServer, tls_server_context

__all__ = ["BundleEndpointServer", "current_spiffe_bundle", "serve_bundle_endpoint"]

logger = logging.getLogger("spire_fabric.federation")


def current_spiffe_bundle(source: object, trust_domain: TrustDomain) -> SpiffeBundle:
    """The SPIFFE bundle of ``trust_domain`` that ``source`` holds now.

    A SpiffeBundle (or a BundleSet of them) is served as is, keeping its sequence number
    and JWT authorities; other sources are assembled from their X.509 and, if they have
    them, JWT authorities.
    """
    if isinstance(source, SpiffeBundle):
        held: object = source
    else:
        get = getattr(source, "get", None)
        held = get(trust_domain) if callable(get) else None
    if isinstance(held, SpiffeBundle) and held.trust_domain == trust_domain:
        return held
    get_x509 = getattr(source, "get_x509_bundle_for_trust_domain", None)
    get_jwt = getattr(source, "get_jwt_bundle_for_trust_domain", None)
    x509_bundle = get_x509(trust_domain) if callable(get_x509) else None
    jwt_bundle = get_jwt(trust_domain) if callable(get_jwt) else None
    if x509_bundle is None and jwt_bundle is None:
        raise BundleError(f"federation: the bundle source holds no bundle for {trust_domain}")
    return SpiffeBundle(
        trust_domain,
        x509_bundle.x509_authorities if x509_bundle is not None else (),
        jwt_bundle.jwt_authorities if jwt_bundle is not None else {},
    )


class _BundleHandler(http.server.BaseHTTPRequestHandler):
    server: _BundleServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        try:
            bundle = self.server.current_bundle()
        except Exception as e:
            logger.error("federation: cannot serve the bundle: %s", e)
            self.send_error(503, "bundle unavailable")
            return
        body = bundle.marshal()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.count_request()

    def _refuse(self) -> None:
        self.send_error(405, "only GET is allowed")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("federation: %s " + format, self.address_string(), *args)


class _BundleServer(TlsThreadingServer):
    def __init__(
        self,
        address: tuple[str, int],
        context: object,
        source: object,
        trust_domain: TrustDomain,
        refresh_hint: timedelta | None,
    ) -> None:
        self._source = source
        self._trust_domain = trust_domain
        self._refresh_hint = refresh_hint
        self._count_lock = threading.Lock()
        self.requests_served = 0
        super().__init__(address, _BundleHandler, context, handshake_timeout=10.0)  # type: ignore[arg-type]

    def current_bundle(self) -> SpiffeBundle:
        bundle = current_spiffe_bundle(self._source, self._trust_domain)
        if self._refresh_hint is not None:
            bundle = dataclasses.replace(bundle, refresh_hint=self._refresh_hint)
        return bundle

    def count_request(self) -> None:
        with self._count_lock:
            self.requests_served += 1


class BundleEndpointServer(MtlsServer):
    """A running bundle endpoint; a context manager that stops it on exit."""

    _server: _BundleServer

    @property
    def requests_served(self) -> int:
        """How many bundle requests were answered (for tests and diagnostics)."""
        return self._server.requests_served

    def __enter__(self) -> BundleEndpointServer:
        return self


def serve_bundle_endpoint(
    bundle_source: X509BundleSource | SpiffeBundle,
    trust_domain: TrustDomain | str,
    svid_source: X509SvidSource,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    refresh_hint: timedelta | None = None,
) -> BundleEndpointServer:
    """Serve ``trust_domain``'s SPIFFE bundle from ``bundle_source`` on https_spiffe.

    Clients (a SPIRE server's ``federation`` relationship, ``fetch_bundle``) authenticate
    this endpoint by the SPIFFE ID of ``svid_source``'s SVID. ``refresh_hint`` overrides the
    hint in the served document. Returns once the socket listens.
    """
    td = as_trust_domain(trust_domain)
    current_spiffe_bundle(bundle_source, td)  # fail now, not on the first request
    server = _BundleServer(
        (host, port), tls_server_context(svid_source), bundle_source, td, refresh_hint
    )
    return BundleEndpointServer(server)
