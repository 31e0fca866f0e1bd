"""Bundle endpoint client, as go-spiffe's ``federation.FetchBundle``.

Two profiles (SPIFFE Trust Domain and Bundle spec, section 5.2):

- ``https_spiffe``: the endpoint presents an X509-SVID. It must verify against the bundle
  of its own trust domain (from ``bundle_source``; usually the bundle being refreshed)
  and carry exactly ``endpoint_id``. No DNS name is checked.
- ``https_web``: ordinary web PKI, the system roots or ``ca_file``, with hostname check.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse

from spire_fabric.identity import (
    BundleError,
    SpiffeBundle,
    SpiffeId,
    TrustDomain,
    X509BundleSource,
    as_trust_domain,
)
from spire_fabric.tls import authorize_id, tls_client_context

from ._errors import FederationError

__all__ = ["HTTPS_SPIFFE", "HTTPS_WEB", "fetch_bundle"]

HTTPS_SPIFFE = "https_spiffe"
HTTPS_WEB = "https_web"
# SPIRE's bundles are a few KiB; a megabyte leaves room and still bounds a hostile endpoint.
MAX_BUNDLE_BYTES = 1 << 20


def _context(
    url: str,
    profile: str,
    endpoint_id: SpiffeId | str | None,
    bundle_source: X509BundleSource | None,
    ca_file: str | None,
) -> ssl.SSLContext:
    if profile == HTTPS_SPIFFE:
        if endpoint_id is None or bundle_source is None:
            raise FederationError(
                f"federation: profile https_spiffe for {url} needs endpoint_id (the endpoint "
                "server's SPIFFE ID) and bundle_source (a bundle of its trust domain)"
            )
        return tls_client_context(bundle_source, authorize_id(endpoint_id))
    if profile == HTTPS_WEB:
        return ssl.create_default_context(cafile=ca_file)
    raise FederationError(
        f"federation: unknown bundle endpoint profile {profile!r}; expected "
        f"{HTTPS_SPIFFE!r} or {HTTPS_WEB!r}"
    )


def fetch_bundle(
    url: str,
    trust_domain: TrustDomain | str,
    *,
    profile: str = HTTPS_SPIFFE,
    endpoint_id: SpiffeId | str | None = None,
    bundle_source: X509BundleSource | None = None,
    ca_file: str | None = None,
    timeout: float = 10.0,
) -> SpiffeBundle:
    """Fetch and parse the SPIFFE bundle of ``trust_domain`` from a bundle endpoint.

    Raises FederationError naming the URL and what went wrong (TLS authentication, HTTP
    status, size, or bundle parsing).
    """
    td = as_trust_domain(trust_domain)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise FederationError(
            f"federation: bundle endpoint URL must be https://host[:port]/..., got {url!r}"
        )
    context = _context(url, profile, endpoint_id, bundle_source, ca_file)
    conn = http.client.HTTPSConnection(
        parts.hostname, parts.port or 443, timeout=timeout, context=context
    )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        response = conn.getresponse()
        body = response.read(MAX_BUNDLE_BYTES + 1)
    except (OSError, http.client.HTTPException) as e:
        raise FederationError(
            f"federation: could not fetch bundle of {td} from {url} ({profile}): {e}"
        ) from e
    finally:
        conn.close()
    if response.status != 200:
        raise FederationError(
            f"federation: bundle endpoint {url} answered HTTP {response.status} "
            f"{response.reason}, expected 200"
        )
    if len(body) > MAX_BUNDLE_BYTES:
        raise FederationError(
            f"federation: bundle from {url} is larger than {MAX_BUNDLE_BYTES} bytes"
        )
    try:
        return SpiffeBundle.parse(td, body)
    except BundleError as e:
        raise FederationError(f"federation: bundle of {td} from {url} is invalid: {e}") from e
