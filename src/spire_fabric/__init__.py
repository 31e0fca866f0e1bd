"""spire_fabric: a Python toolkit for SPIFFE/SPIRE.

What application code needs is importable from here::

    from spire_fabric import X509Source, mtls_server_context, authorize_id

The rest lives in its room, named by the concept (as go-spiffe's packages are):
`identity` (IDs, bundles, SVID verification), `workload` (Workload API), `tls` (mutual TLS
on stdlib ssl), `federation` (bundle endpoints), `server` (SPIRE Server and Agent admin
APIs), `topology` / `render` (the declarative model and its configs, manifests, diagrams),
`runtime` / `verify` / `deploy` (making a topology real and proving it works).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spire_fabric import _html
from spire_fabric._lazy import lazy_attributes
from spire_fabric._version import __version__
from spire_fabric.errors import SpireFabricError

if TYPE_CHECKING:
    from spire_fabric.federation import BundleWatcher, fetch_bundle, serve_bundle_endpoint
    from spire_fabric.identity import (
        BundleSet,
        JwtBundle,
        JwtSvid,
        SpiffeBundle,
        SpiffeId,
        TrustDomain,
        X509Bundle,
        X509Svid,
        parse_and_validate_jwt_svid,
        verify_x509_svid,
    )
    from spire_fabric.server import AsyncSpireServerClient, SpireServerClient
    from spire_fabric.tls import (
        authorize_any,
        authorize_id,
        authorize_member_of,
        authorize_one_of,
        authorize_predicate,
        connect_mtls,
        mtls_client_context,
        mtls_server_context,
        mtls_urlopen,
        serve_mtls_threaded,
        start_mtls_server,
        tls_client_context,
        tls_server_context,
        verify_peer,
    )
    from spire_fabric.topology import Topology
    from spire_fabric.workload import (
        AsyncBundleSource,
        AsyncJwtSource,
        AsyncWorkloadApiClient,
        AsyncX509Source,
        BundleSource,
        JwtSource,
        WorkloadApiClient,
        X509Source,
    )

# Each public name and the room it lives in. Imported on first use (PEP 562), so a
# program that needs one room, such as `python -m spire_fabric.entries` (the server
# client), does not start by importing the Workload API, mTLS and federation ones:
# about a third of its start-up before this.
_LAZY = {
    "BundleWatcher": "spire_fabric.federation",
    "fetch_bundle": "spire_fabric.federation",
    "serve_bundle_endpoint": "spire_fabric.federation",
    "BundleSet": "spire_fabric.identity",
    "JwtBundle": "spire_fabric.identity",
    "JwtSvid": "spire_fabric.identity",
    "SpiffeBundle": "spire_fabric.identity",
    "SpiffeId": "spire_fabric.identity",
    "TrustDomain": "spire_fabric.identity",
    "X509Bundle": "spire_fabric.identity",
    "X509Svid": "spire_fabric.identity",
    "parse_and_validate_jwt_svid": "spire_fabric.identity",
    "verify_x509_svid": "spire_fabric.identity",
    "AsyncSpireServerClient": "spire_fabric.server",
    "SpireServerClient": "spire_fabric.server",
    "authorize_any": "spire_fabric.tls",
    "authorize_id": "spire_fabric.tls",
    "authorize_member_of": "spire_fabric.tls",
    "authorize_one_of": "spire_fabric.tls",
    "authorize_predicate": "spire_fabric.tls",
    "connect_mtls": "spire_fabric.tls",
    "mtls_client_context": "spire_fabric.tls",
    "mtls_server_context": "spire_fabric.tls",
    "mtls_urlopen": "spire_fabric.tls",
    "serve_mtls_threaded": "spire_fabric.tls",
    "start_mtls_server": "spire_fabric.tls",
    "tls_client_context": "spire_fabric.tls",
    "tls_server_context": "spire_fabric.tls",
    "verify_peer": "spire_fabric.tls",
    "AsyncBundleSource": "spire_fabric.workload",
    "AsyncJwtSource": "spire_fabric.workload",
    "AsyncWorkloadApiClient": "spire_fabric.workload",
    "AsyncX509Source": "spire_fabric.workload",
    "BundleSource": "spire_fabric.workload",
    "JwtSource": "spire_fabric.workload",
    "WorkloadApiClient": "spire_fabric.workload",
    "X509Source": "spire_fabric.workload",
}


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)


def _draw_topology(topology: Topology) -> str:
    # Wiring, done here because the root is above every layer: the topology's notebook view
    # is drawn by render, which imports topology, so topology cannot import it (see
    # _html.topology_view). Imported on first use: a workload that never shows a topology
    # does not pay for render and PyYAML at `import spire_fabric`.
    from spire_fabric.render import render_topology_html

    return render_topology_html(topology)


_html.set_topology_drawer(_draw_topology)

__all__ = [
    "AsyncBundleSource",
    "AsyncJwtSource",
    "AsyncSpireServerClient",
    "AsyncWorkloadApiClient",
    "AsyncX509Source",
    "BundleSet",
    "BundleSource",
    "BundleWatcher",
    "JwtBundle",
    "JwtSource",
    "JwtSvid",
    "SpiffeBundle",
    "SpiffeId",
    "SpireFabricError",
    "SpireServerClient",
    "TrustDomain",
    "WorkloadApiClient",
    "X509Bundle",
    "X509Source",
    "X509Svid",
    "__version__",
    "authorize_any",
    "authorize_id",
    "authorize_member_of",
    "authorize_one_of",
    "authorize_predicate",
    "connect_mtls",
    "fetch_bundle",
    "mtls_client_context",
    "mtls_server_context",
    "mtls_urlopen",
    "parse_and_validate_jwt_svid",
    "serve_bundle_endpoint",
    "serve_mtls_threaded",
    "start_mtls_server",
    "tls_client_context",
    "tls_server_context",
    "verify_peer",
    "verify_x509_svid",
]
