"""`rotate jwt` on a server with replicas: each step reaches each replica's own API.

A double stands in for two replicas, which the local target cannot run: each replica keeps
its own LocalAuthority state, as SPIRE does, and every call is recorded with the replica
that took it. The waits between the steps ask holders and SVIDs (SPIRE-facing, proven by
tests/e2e/test_rotate.py) and are replaced here by "nothing missing". The same path ran
once against 2 real replicas on the test clusters (docs/high-availability.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from ha_topology import HA_SERVER, enterprise_ha

import spire_fabric.runtime.core.rotation as rotation
from spire_fabric.runtime.deployment import ServerReplica
from spire_fabric.server import AuthorityState, AuthorityStates, Bundle, JwtAuthority

T = enterprise_ha()
REPLICAS = (f"{HA_SERVER}-0", f"{HA_SERVER}-1")


@dataclass
class Replica:
    """One replica's own authorities: active, prepared, old (key IDs)."""

    name: str
    active: str
    prepared: str = ""
    old: str = ""


@dataclass
class Bundles:
    tainted: set[str] = field(default_factory=set)
    held: set[str] = field(default_factory=set)


@dataclass
class Api:
    replica: Replica | None  # None: the Service
    bundle: Bundles
    calls: list[tuple[str, str, str]]

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _me(self, what: str, aid: str = "") -> Replica:
        who = self.replica.name if self.replica else "service"
        self.calls.append((who, what, aid))
        if self.replica is None:
            raise AssertionError(f"{what} went through the Service, not a replica")
        return self.replica

    def get_authority_state(self, kind: str, timeout: float) -> AuthorityStates:
        r = self._me("state")

        def st(a: str) -> AuthorityState | None:
            return AuthorityState(a, 0) if a else None

        return AuthorityStates(st(r.active), st(r.prepared), st(r.old))

    def get_bundle(self, timeout: float) -> Bundle:
        keys = tuple(JwtAuthority(k, _KEY, tainted=k in self.bundle.tainted)
                     for k in sorted(self.bundle.held))  # fmt: skip
        return Bundle(T.server(HA_SERVER).trust_domain, jwt_authorities=keys)

    def prepare_authority(self, kind: str, timeout: float) -> AuthorityState:
        r = self._me("prepare")
        r.prepared = f"{r.name}-new"
        self.bundle.held.add(r.prepared)
        return AuthorityState(r.prepared, 0)

    def activate_authority(self, aid: str, kind: str, timeout: float) -> AuthorityState:
        r = self._me("activate", aid)
        assert aid == r.prepared, f"{r.name} was asked to activate {aid}, not its own"
        r.old, r.active, r.prepared = r.active, r.prepared, ""
        return AuthorityState(r.active, 0)

    def taint_authority(self, aid: str, kind: str, timeout: float) -> AuthorityState:
        r = self._me("taint", aid)
        assert aid == r.old, f"{r.name} was asked to taint {aid}, not its own old one"
        self.bundle.tainted.add(aid)
        return AuthorityState(aid, 0)

    def revoke_authority(self, aid: str, kind: str, timeout: float) -> AuthorityState:
        r = self._me("revoke", aid)
        assert aid == r.old and aid in self.bundle.tainted, (r, aid)
        self.bundle.held.discard(aid)
        r.old = ""
        return AuthorityState(aid, 0)


def _key():  # any public key: the bundle's keys are compared by ID only here
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).public_key()


_KEY = _key()


@dataclass
class Double:
    replicas: dict[str, Replica]
    bundle: Bundles
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    topology: object = T
    target: str = "kubernetes"

    def server_replicas(self, name: str) -> tuple[ServerReplica, ...]:
        return tuple(ServerReplica(n, True) for n in self.replicas)

    def replica_server(self, name: str, replica: str) -> Api:
        return Api(self.replicas[replica], self.bundle, self.calls)

    def server(self, name: str) -> Api:
        return Api(None, self.bundle, self.calls)


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch) -> Double:
    monkeypatch.setattr(rotation, "_holders_missing", lambda *a, **k: "")  # nobody lacks
    monkeypatch.setattr(rotation, "_signed_by", lambda *a, **k: "")  # nothing chains to it
    monkeypatch.setattr(rotation, "_ids", lambda run: set())
    monkeypatch.setattr(rotation, "record_serials", lambda run: None)
    replicas = {n: Replica(n, f"{n}-key") for n in REPLICAS}
    return Double(replicas, Bundles(held={r.active for r in replicas.values()}))


def test_jwt_rotation_with_revoke_reaches_every_replica_through_its_own_api(double: Double):
    result = rotation.rotate(double, HA_SERVER, "jwt", revoke=True)  # type: ignore[arg-type]
    for verb in ("prepare", "activate", "taint", "revoke"):
        took = [who for who, what, _ in double.calls if what == verb]
        assert took == list(REPLICAS), (verb, double.calls)
    assert not [c for c in double.calls if c[0] == "service"]
    assert result.new_authority_id == ",".join(f"{n}-new" for n in REPLICAS)
    assert result.old_authority_id == ",".join(f"{n}-key" for n in REPLICAS)
    assert double.bundle.held == {f"{n}-new" for n in REPLICAS}  # both old keys revoked
    names = [s.name for s in result.steps]
    assert names.index(f"activate on {REPLICAS[0]}") > names.index("wait for every holder")
    assert names.index(f"revoke on {REPLICAS[0]}") > names.index("wait for renewals")


def test_a_replica_not_ready_refuses_before_any_call(double: Double):
    double.server_replicas = lambda name: (ServerReplica(REPLICAS[0], True),  # type: ignore[method-assign]
                                           ServerReplica(REPLICAS[1], False))  # fmt: skip
    with pytest.raises(rotation.RotationRefused, match=f"ready: {REPLICAS[0]} of"):
        rotation.rotate(double, HA_SERVER, "jwt")  # type: ignore[arg-type]
    assert double.calls == []
