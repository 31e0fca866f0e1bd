"""verify after a replica of a highly available server is gone (issue 23, drill (a)).

Each replica holds its own X.509 CA and JWT key (with the memory key manager they die
with its pod), so after a pod loss the workloads still hold SVIDs that no live replica
signs with. They are trusted (the JWT key stays in the bundle until it expires; the CA
chains to a root of the bundle), so verify must say so in green, and stay red for a
revoked key, a chain that does not verify, or anything tainted.

Why a double: what is judged (which replica signed what, a revoked or tainted key, a
forged CA) cannot be produced on demand by real SPIRE in a unit test's time. The double
answers SPIRE's calls with real certificates and keys, so the report's chain verification
is the real one; the drills on the clusters (tests/kubernetes_clusters/failover_drills.py)
run the same code against real SPIRE.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from ha_topology import enterprise_ha

from spire_fabric.runtime.deployment import ServerReplica
from spire_fabric.server import AuthorityState, AuthorityStates, Bundle
from spire_fabric.server._models import JwtAuthority, X509Authority
from spire_fabric.testing.pki import Ca, make_ca, make_svid
from spire_fabric.topology import Topology
from spire_fabric.verify import AuthoritiesReport, authorities_report, authority_checks
from spire_fabric.verify._authorities import _served_by, authority_key_id, skid

NOW = datetime.now(timezone.utc).replace(microsecond=0)
DOWN = "spire-downstream-server"
HA = enterprise_ha()
ONE = enterprise_ha(key_manager="disk", replicas=1)
TD = HA.server(DOWN).trust_domain


# ---- a small PKI with SPIRE's shape (subject and authority key IDs) ---------------------


def _ca(name: str, issuer: Ca | None = None) -> Ca:
    return make_ca(TD.name, name, issuer=issuer)


def _leaf(spiffe_id: str, issuer: Ca) -> x509.Certificate:
    return make_svid(issuer, spiffe_id).leaf


def _token(kid: str) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'ES256', 'kid': kid})}.{part({'sub': 'x'})}.c2ln"


# ---- the world the double answers from --------------------------------------------------


@dataclass
class World:
    """Two live replicas (``live``: name -> (CA, JWT key ID)), the shared bundle, and what
    each workload's agent serves (its chain, its JWT-SVID's key ID)."""

    live: dict[str, tuple[Ca, str]]
    roots: list[tuple[x509.Certificate, bool]]  # (root, tainted)
    jwt_keys: list[tuple[str, bool]]  # (key ID, tainted)
    served: dict[str, tuple[tuple[x509.Certificate, ...], str]] = field(default_factory=dict)

    def bundle(self) -> Bundle:
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        return Bundle(
            TD,
            tuple(X509Authority(c, tainted=t) for c, t in self.roots),
            tuple(
                JwtAuthority(kid, key, int((NOW + timedelta(hours=20)).timestamp()), t)
                for kid, t in self.jwt_keys
            ),
            sequence_number=4,
        )


class Api:
    def __init__(self, world: World, replica: str) -> None:
        self.world, self.replica = world, replica

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def get_authority_state(self, kind: str, timeout: float) -> AuthorityStates:
        ca, kid = self.world.live[self.replica]
        expires = int((NOW + timedelta(days=1)).timestamp())
        if kind == "x509":
            state = AuthorityState(skid(ca.cert), expires, authority_key_id(ca.cert))
            return AuthorityStates(state)
        return AuthorityStates(AuthorityState(kid, expires))

    def get_bundle(self, timeout: float) -> Bundle:
        return self.world.bundle()

    def get_federated_bundle(self, td: object, timeout: float) -> Bundle:
        return self.world.bundle()

    def list_agents(self, timeout: float) -> list[object]:
        return []


@dataclass
class Double:
    """What the report asks of a deployment, answered from ``world``."""

    topology: Topology
    world: World
    target: str = "kubernetes"
    name: str = "enterprise"

    def server(self, name: str) -> Api:
        return Api(self.world, next(iter(self.world.live)))  # the Service picks one

    def server_replicas(self, name: str) -> tuple[ServerReplica, ...]:
        return tuple(ServerReplica(r, True) for r in self.world.live)

    def replica_server(self, name: str, replica: str) -> Api:
        return Api(self.world, replica)

    def agent_id(self, name: str) -> None:
        return None


class Reads:
    """The workloads' identities as their agents serve them (IdentityReads' face)."""

    def __init__(self, t: Topology, world: World) -> None:
        self.t, self.world = t, world

    def prefetch(self, views: object) -> None:
        return None

    def x509_context(self, name: str) -> SimpleNamespace:
        chain, _ = self.world.served[name]
        svid = SimpleNamespace(
            spiffe_id=self.t.workload(name).spiffe_id, leaf=chain[0], cert_chain=chain
        )
        return SimpleNamespace(svids=[svid])

    def jwt_svid(self, name: str, audience: str) -> SimpleNamespace:
        _, kid = self.world.served[name]
        return SimpleNamespace(marshal=lambda: _token(kid))


# ---- the scenario: drill (a) -----------------------------------------------------------

ROOT = _ca("root")
GONE_CA = _ca("replica-0 (gone)", ROOT)
NEW_CA = _ca("replica-0 (replacement)", ROOT)
OTHER_CA = _ca("replica-1", ROOT)
GONE_KID, NEW_KID, OTHER_KID = "kid-0-before", "kid-0-new", "kid-1"


def _world(
    *,
    served_by_gone: tuple[x509.Certificate, ...] | None = None,
    gone_kid_in_bundle: bool = True,
    gone_kid_tainted: bool = False,
    root_tainted: bool = False,
    t: Topology = HA,
) -> World:
    """replica-0 was deleted and replaced (new memory keys); replica-1 lives on. Every
    workload of the downstream server still holds the SVIDs replica-0 signed before."""
    keys = [(NEW_KID, False), (OTHER_KID, False)]
    if gone_kid_in_bundle:
        keys.append((GONE_KID, gone_kid_tainted))
    w = World(
        {f"{DOWN}-0": (NEW_CA, NEW_KID), f"{DOWN}-1": (OTHER_CA, OTHER_KID)},
        [(ROOT.cert, root_tainted)],
        keys,
    )
    for name in _served_by(t, t.server(DOWN)):
        leaf = _leaf(t.workload(name).spiffe_id, GONE_CA)
        w.served[name] = (served_by_gone or (leaf, GONE_CA.cert), GONE_KID)
    return w


def _report(world: World, t: Topology = HA) -> AuthoritiesReport:
    d = Double(t, world)
    return authorities_report(d, [DOWN], Reads(t, world))  # type: ignore[arg-type]


def _svids_check(world: World, t: Topology = HA) -> tuple[bool, str]:
    (c,) = [c for c in authority_checks(_report(world, t), t) if c.id == f"authority-svids:{DOWN}"]
    return c.ok, c.detail


def test_the_report_sees_the_gone_replicas_chain_verified_to_the_bundle_root() -> None:
    section = _report(_world()).server(DOWN)
    assert section.replicas == 2
    assert {r.authority_id for r in section.authorities} == {
        skid(NEW_CA.cert),
        skid(OTHER_CA.cert),
        NEW_KID,
        OTHER_KID,
    }
    assert section.workloads
    for w in section.workloads:
        assert (w.x509_authority_id, w.jwt_key_id) == (skid(GONE_CA.cert), GONE_KID)
        assert w.x509_chain == (skid(GONE_CA.cert), skid(ROOT.cert))
    assert ("jwt", GONE_KID) in {(b.kind, b.authority_id) for b in section.bundle_authorities}


def test_svids_from_a_gone_replica_are_green_and_named() -> None:
    ok, detail = _svids_check(_world())
    assert ok, detail
    assert (
        f"JWT-SVID from {GONE_KID}, from a replica that is gone (its key is still in the "
        "bundle until " in detail
    )
    assert (
        f"X.509-SVID from CA {skid(GONE_CA.cert)}, from a replica that is gone (its chain "
        f"verifies to root {skid(ROOT.cert)} of the bundle; the last of these expires at " in detail
    )
    assert "renewed at half its lifetime" in detail
    assert "{last}" not in detail


def test_a_jwt_svid_whose_key_left_the_bundle_is_red() -> None:
    ok, detail = _svids_check(_world(gone_kid_in_bundle=False))
    assert not ok
    assert (
        f"JWT-SVID from {GONE_KID}, which is none of {DOWN}'s authorities: no live "
        "replica holds it and the bundle does not (revoked"
    ) in detail
    assert "X.509-SVID" not in detail  # the X.509-SVIDs are still fine


def test_a_tainted_jwt_key_of_a_gone_replica_is_red() -> None:
    ok, detail = _svids_check(_world(gone_kid_tainted=True))
    assert not ok
    assert f"JWT-SVID from {GONE_KID}, which no live replica of {DOWN} holds" in detail
    assert "tainted in the bundle" in detail


def test_an_x509_svid_of_a_gone_replica_under_a_tainted_root_is_red() -> None:
    ok, detail = _svids_check(_world(root_tainted=True))
    assert not ok
    assert (
        f"X.509-SVID from {skid(GONE_CA.cert)}, which no live replica of {DOWN} holds (its "
        f"replica is gone), under root {skid(ROOT.cert)}, which is tainted" in detail
    )


def test_an_x509_svid_whose_chain_does_not_verify_is_red() -> None:
    forged_root = _ca("not in the bundle")
    forged_ca = _ca("forged", forged_root)
    chain = (_leaf(HA.workload("data-processor").spiffe_id, forged_ca), forged_ca.cert)
    world = _world()
    world.served["data-processor"] = (chain, NEW_KID)  # its JWT-SVID is a live one
    section = _report(world).server(DOWN)
    assert next(w for w in section.workloads if w.workload == "data-processor").x509_chain == ()
    ok, detail = _svids_check(world)
    assert not ok
    assert (
        f"data-processor: X.509-SVID from {skid(forged_ca.cert)}, which is none of {DOWN}'s "
        "authorities: no live replica holds it and its chain does not verify against "
        "the bundle"
    ) in detail


def test_a_server_of_one_replica_is_judged_as_before() -> None:
    """One replica holds every authority its server signs with: an SVID from a key it does
    not hold is red even though the bundle still has it and the chain verifies."""
    world = _world(t=ONE)
    section = _report(world, ONE).server(DOWN)
    assert section.replicas == 1
    ok, detail = _svids_check(world, ONE)
    assert not ok
    names = ", ".join(_served_by(ONE, ONE.server(DOWN)))
    assert detail == (
        f"{names}: X.509-SVID from {skid(GONE_CA.cert)}, which is none of {DOWN}'s "
        f"authorities; {names}: JWT-SVID from {GONE_KID}, which is none of "
        f"{DOWN}'s authorities"
    )
    # and the same section with the replicas count the report would give two: green
    two = replace(section, replicas=2)
    report = AuthoritiesReport("enterprise", "kubernetes", (two,))
    (c,) = [c for c in authority_checks(report, ONE) if c.id == f"authority-svids:{DOWN}"]
    assert c.ok, c.detail


@pytest.mark.parametrize("kind", ["x509", "jwt"])
def test_svids_from_live_replicas_are_not_named_as_from_a_gone_one(kind: str) -> None:
    world = _world()
    name = _served_by(HA, HA.server(DOWN))[0]
    chain, kid = world.served[name]
    if kind == "x509":
        chain = (_leaf(HA.workload(name).spiffe_id, OTHER_CA), OTHER_CA.cert)
    else:
        kid = OTHER_KID
    world.served = {name: (chain, kid)}
    for other in _served_by(HA, HA.server(DOWN))[1:]:
        world.served[other] = (
            (_leaf(HA.workload(other).spiffe_id, OTHER_CA), OTHER_CA.cert),
            OTHER_KID,
        )
    ok, detail = _svids_check(world)
    assert ok, detail
    gone = "X.509-SVID from CA" if kind == "jwt" else f"JWT-SVID from {GONE_KID}"
    assert detail.startswith(f"{name}: {gone}"), detail  # its other SVID, from the gone one
    others = _served_by(HA, HA.server(DOWN))[1:]  # theirs are from live, active authorities
    assert detail.count("from a replica that is gone") == 1
    assert not [o for o in others if o in detail], detail
