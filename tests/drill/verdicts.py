"""What the key-compromise drill checks after the sequence, on either target: credentials
kept from before (as an attacker with the leaked keys would hold them) refused, and fresh
ones accepted, by each trust domain's view (our SDK with a workload's own bundles, and a
go-spiffe peer holding the same bundles). Shared by the local drill
(tests/e2e/test_key_compromise_drill.py) and the Kubernetes one
(tests/kubernetes_clusters/test_installer.py)."""

from __future__ import annotations

from dataclasses import dataclass

from drill.gospiffe import GoSpiffePeer
from drill.load import API, GATEWAY, PROCESSOR, UPSTREAM_CLIENT
from spire_fabric.identity import (
    BundleSet,
    JwtSvid,
    SpiffeBundle,
    TrustDomain,
    X509Svid,
    parse_and_validate_jwt_svid,
    verify_x509_svid,
)
from spire_fabric.runtime.deployment import Deployment

__all__ = ["VIEWS", "Kept", "keep", "sdk_accepts_jwt", "sdk_accepts_x509", "view_peer"]

# Per trust domain, a workload whose view (own and federated bundles) the refusals use.
VIEWS = {"downstream.example.org": PROCESSOR, "enterprise-root.org": UPSTREAM_CLIENT}


@dataclass(frozen=True)
class Kept:
    """Credentials taken before the drill, as an attacker with the leaked keys would hold
    them: a JWT-SVID per trust domain (with the audience it is for) and an X.509-SVID per
    trust domain."""

    jwts: dict[str, tuple[JwtSvid, str]]
    x509s: dict[str, X509Svid]


def keep(d: Deployment) -> Kept:
    t = d.topology
    api_id, gateway_id = (str(t.workload(w).spiffe_id) for w in (API, GATEWAY))
    return Kept(
        jwts={"downstream.example.org": (d.jwt_svid(PROCESSOR, api_id), api_id),
              "enterprise-root.org": (d.jwt_svid(UPSTREAM_CLIENT, gateway_id), gateway_id)},
        x509s={td: d.x509_context(w).default_svid for td, w in VIEWS.items()},
    )  # fmt: skip


def view_peer(d: Deployment, workload: str) -> tuple[GoSpiffePeer, BundleSet[SpiffeBundle]]:
    """A go-spiffe peer holding exactly the bundles ``workload`` gets from its agent (own
    and federated, X.509 and JWT), and the same bundles for our SDK."""
    x509 = d.x509_context(workload).bundles
    jwt = d.jwt_bundles(workload)
    tds: set[TrustDomain] = set(x509) | {b.trust_domain for b in jwt}
    bundles = BundleSet(
        SpiffeBundle(td, x509[td].x509_authorities if td in x509 else (),
                     dict(j.jwt_authorities) if (j := jwt.get(td)) else {})
        for td in tds
    )  # fmt: skip
    return GoSpiffePeer({str(b.trust_domain): b.marshal() for b in bundles}), bundles


def sdk_accepts_jwt(bundles: BundleSet[SpiffeBundle], token: str, audience: str) -> str:
    try:
        parse_and_validate_jwt_svid(token, bundles, [audience])
    except Exception as err:
        return f"refused: {err}"
    return "accepted"


def sdk_accepts_x509(bundles: BundleSet[SpiffeBundle], svid: X509Svid) -> str:
    try:
        verify_x509_svid(svid.cert_chain, bundles)
    except Exception as err:
        return f"refused: {err}"
    return "accepted"
