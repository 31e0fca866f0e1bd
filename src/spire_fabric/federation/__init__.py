"""SPIFFE federation: fetch, watch and serve trust bundles (go-spiffe ``federation``).

- :func:`fetch_bundle` — one fetch from a bundle endpoint, profile ``https_spiffe`` or
  ``https_web``, returning a ``SpiffeBundle``.
- :class:`BundleWatcher` — re-fetches honouring ``spiffe_refresh_hint`` and is a bundle
  source for the tls contexts.
- :func:`serve_bundle_endpoint` — serve a trust domain's bundle on ``https_spiffe``.

All failures raise :class:`FederationError` (identity's ``BundleError`` for a source that
holds no bundle).
"""

from ._endpoint import BundleEndpointServer, current_spiffe_bundle, serve_bundle_endpoint
from ._errors import FederationError
from ._fetch import HTTPS_SPIFFE, HTTPS_WEB, fetch_bundle
from ._watcher import BundleWatcher

__all__ = [
    "HTTPS_SPIFFE",
    "HTTPS_WEB",
    "BundleEndpointServer",
    "BundleWatcher",
    "FederationError",
    "current_spiffe_bundle",
    "fetch_bundle",
    "serve_bundle_endpoint",
]
