"""What the key-compromise drill checks after the sequence, on either target: credentials
kept from before (as an attacker with the leaked keys would hold them) refused, and fresh
ones accepted, by each trust domain's view (our SDK with a workload's own bundles, and a
go-spiffe peer holding the same bundles). Shared by the local drill
(tests/e2e/test_key_compromise_drill.py) and the Kubernetes one
(tests/kubernetes_clusters/test_installer.py)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from drill.gospiffe import GoSpiffePeer
from drill.load import API, GATEWAY, PROCESSOR, UPSTREAM_CLIENT, present_jwt, present_x509
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
from spire_fabric.verify._authorities import skid

__all__ = [
    "VIEWS",
    "Kept",
    "assert_kept_refused_and_fresh_accepted",
    "assert_nothing_revoked_is_held",
    "keep",
    "keep_accepted",
    "sdk_accepts_jwt",
    "sdk_accepts_x509",
    "view_peer",
]

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


def keep_accepted(d: Deployment) -> Kept:
    """:func:`keep`, with the positive control: before the drill every verifier (each
    trust domain's view, our SDK and go-spiffe) accepts what was kept."""
    kept = keep(d)
    for workload in VIEWS.values():
        peer, bundles = view_peer(d, workload)
        with peer:
            for token, audience in kept.jwts.values():
                assert peer.verify_jwt(token, audience).accepted
                assert sdk_accepts_jwt(bundles, token.token, audience) == "accepted"
            for svid in kept.x509s.values():
                assert peer.verify_x509(svid).accepted
                assert sdk_accepts_x509(bundles, svid) == "accepted"
    return kept


def assert_nothing_revoked_is_held(d: Deployment, revoked_jwt_keys: set[str],
                                   old_root: x509.Certificate) -> None:  # fmt: skip
    """No server's bundle, nor its federated copy of the other, holds a revoked JWT key or
    the old root (and each still holds some root)."""
    for server in (s.name for s in d.topology.servers):
        with d.server(server) as api:
            own = api.get_bundle()
            held = [own] + [api.get_federated_bundle(td) for td in VIEWS
                            if td != str(own.trust_domain)]  # fmt: skip
        for bundle in held:
            keys = {k.key_id for k in bundle.jwt_authorities}
            assert not keys & revoked_jwt_keys, (server, bundle.trust_domain, keys)
            roots = {skid(a.certificate) for a in bundle.x509_authorities}
            assert roots and skid(old_root) not in roots, (server, bundle.trust_domain)


def assert_kept_refused_and_fresh_accepted(d: Deployment, kept: Kept) -> None:
    """What the revoked JWT keys signed and what was minted under the revoked root is
    refused by both trust domains' views (our SDK and go-spiffe) and by the running
    services; fresh credentials are accepted by the same verifiers, so a refusal means the
    revocation and not a broken verifier."""
    fresh = keep(d)
    for td, workload in VIEWS.items():
        peer, bundles = view_peer(d, workload)
        with peer:
            for jwt_td, (token, audience) in kept.jwts.items():
                verdict = peer.verify_jwt(token, audience)
                assert not verdict.accepted and "no JWT authority" in verdict.output, verdict
                sdk = sdk_accepts_jwt(bundles, token.token, audience)
                assert sdk.startswith("refused") and "no JWT authority" in sdk, sdk
                new = fresh.jwts[jwt_td][0]
                assert peer.verify_jwt(new, audience).accepted, (td, jwt_td)
                assert sdk_accepts_jwt(bundles, new.token, audience) == "accepted"
            for svid_td, svid in kept.x509s.items():
                verdict = peer.verify_x509(svid)
                assert not verdict.accepted, (td, svid_td, verdict)
                assert "could not verify leaf certificate" in verdict.output, verdict.output
                assert sdk_accepts_x509(bundles, svid).startswith("refused"), (td, svid_td)
                assert peer.verify_x509(fresh.x509s[svid_td]).accepted, (td, svid_td)
                assert sdk_accepts_x509(bundles, fresh.x509s[svid_td]) == "accepted"
    # the running services of downstream.example.org that take JWT-SVIDs (the gateway does
    # not tell a caller why; the API names the missing key)
    for caller, target, td, why in (
        (PROCESSOR, API, "downstream.example.org", b"no JWT authority"),
        (UPSTREAM_CLIENT, GATEWAY, "enterprise-root.org", b"credentials not accepted"),
    ):
        status, body = present_jwt(d, caller, target, kept.jwts[td][0].token)
        assert status == 401 and why in body, (target, status, body)
        status, body = present_jwt(d, caller, target, fresh.jwts[td][0].token)
        assert status in (200, 201), (target, status, body)
    # the running API refuses the old root's X.509-SVID in the handshake, takes the new one
    _, upstream_view = view_peer(d, UPSTREAM_CLIENT)
    refused = present_x509(d, kept.x509s["enterprise-root.org"], upstream_view, API)
    assert not refused.startswith("HTTP"), refused
    accepted = present_x509(d, fresh.x509s["enterprise-root.org"], upstream_view, API)
    assert accepted == "HTTP 200", accepted
