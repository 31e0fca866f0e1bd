"""`rotate root` on a topology whose downstream server has 2 replicas: which replica takes
each call, the roll of the other, resuming after an interruption at every call, and the
refusal when a replica is not ready.

A double stands in for SPIRE 1.13.3 as its source behaves (the local target runs no
replicas, and the clusters are a shared resource): each replica keeps its own X.509
LocalAuthority state; the bundle is one per trust domain (the shared datastore); the
upstream taint and revoke are validated as ``validateUpstreamAuthoritySubjectKey`` does
(only the upstream of the taking replica's old authority), a second taint fails "already
tainted"; the taint re-signs the taking replica's own server SVID only (spiffe/spire#5587);
and every mint (a prepare, a restart with memory keys) syncs the bundle with the placed
CA's roots, revoking a tainted root missing from them (``SyncX509Roots``), which is why the
other replicas are rolled before the taint. The waits on agents and workloads read SPIRE
through the authorities report (proven by tests/e2e/test_rotate_root.py) and are replaced
by "nothing missing" here, except the one on each replica's served SVID. Not yet run on the
test clusters (docs/high-availability.md)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from ha_topology import HA_SERVER, enterprise_ha

import spire_fabric.runtime.core.root_rotation as rr
from spire_fabric.runtime.ca_hierarchy import SigningCa
from spire_fabric.runtime.core import CaStore
from spire_fabric.runtime.core.rotation import RotationRefused
from spire_fabric.runtime.deployment import ServerReplica
from spire_fabric.server import (
    AuthorityState,
    AuthorityStates,
    Bundle,
    InvalidArgumentError,
    NotFoundError,
    X509Authority,
)
from spire_fabric.testing.pki import Ca, make_svid
from spire_fabric.verify._authorities import skid

T = enterprise_ha()
UPSTREAM = "spire-upstream-server"
REPLICAS = (f"{HA_SERVER}-0", f"{HA_SERVER}-1")
_INVALID, _NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND


class Interrupted(Exception):
    """The run stops here (a crash, a Ctrl-C) before the call takes effect."""


def _authority(placed: Placed, td: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """An X.509 authority as SPIRE mints one through its disk UpstreamAuthority: a CA
    signed by the placed CA's key (the intermediate, or the root itself for the bridge)."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = placed.chain[0]
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "authority")]))
        .issuer_name(issuer.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer.public_key()), False)  # type: ignore[arg-type]
        .add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(f"spiffe://{td}")]), critical=False)
        .sign(placed.key, hashes.SHA256())  # type: ignore[arg-type]
    )  # fmt: skip
    return cert, key


@dataclass
class Placed:
    """What a server's disk UpstreamAuthority reads: the signing chain, its key, the roots
    it publishes (by subject key ID)."""

    chain: list[x509.Certificate]
    key: object
    roots: set[str]

    @property
    def signer(self) -> str:
        return skid(self.chain[0])


@dataclass
class Replica:
    name: str
    server: str
    active: AuthorityState
    prepared: AuthorityState | None = None
    old: AuthorityState | None = None
    served: str = ""  # the authority that signed the SVID it serves its APIs with
    minted: int = 0

    def states(self) -> AuthorityStates:
        return AuthorityStates(self.active, self.prepared, self.old)


@dataclass
class Spire:
    """What SPIRE holds: replicas, each server's bundle (root SKID -> [cert, tainted]),
    what is placed for each server (signer SKID, the roots it publishes)."""

    store: CaStore
    replicas: dict[str, Replica] = field(default_factory=dict)
    bundles: dict[str, dict[str, list]] = field(default_factory=dict)
    placed: dict[str, Placed] = field(default_factory=dict)
    # authority ID -> (its certificate, its key, the chain above it)
    authorities: dict[str, tuple] = field(default_factory=dict)
    root_of: dict[str, str] = field(default_factory=dict)  # upstream SKID -> its root SKID
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    ready: dict[str, bool] = field(default_factory=dict)
    fail_at: int = -1  # the index of the changing call that is interrupted
    changes: int = 0

    def change(self, who: str, what: str, arg: str = "") -> None:
        if self.changes == self.fail_at:
            self.changes += 1
            raise Interrupted(f"{what} on {who}")
        self.changes += 1
        self.calls.append((who, what, arg))

    def mint(self, r: Replica) -> AuthorityState:
        """A new authority under the placed CA, and SPIRE's SyncX509Roots with its roots."""
        placed = self.placed[r.server]
        cert, key = _authority(placed, T.server(r.server).trust_domain.name)
        aid = skid(cert)
        self.authorities[aid] = (cert, key, placed.chain)
        (root,) = placed.roots  # the placed CA's bundle file: the root its chain ends at
        self.root_of[aid] = root
        bundle = self.bundles[r.server]
        for old, (_, tainted) in list(bundle.items()):
            if tainted and old not in placed.roots:
                del bundle[old]
                self.calls.append((r.name, "SPIRE revoked a tainted root on a mint", old))
        return AuthorityState(aid, 0, placed.signer)

    def served_chain(self, r: Replica) -> tuple[x509.Certificate, ...]:
        cert, key, above = self.authorities[r.served]
        server_id = f"spiffe://{T.server(r.server).trust_domain.name}/spire/server"
        leaf = make_svid(Ca(cert, key), server_id).leaf
        return (leaf, cert, *above)


class Api:
    def __init__(self, spire: Spire, server: str, replica: Replica | None) -> None:
        self.spire, self.server, self.replica = spire, server, replica

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _me(self, what: str) -> Replica:
        if self.replica is None:
            raise AssertionError(f"{what} on {self.server} went through its Service")
        return self.replica

    @property
    def _bundle(self) -> dict[str, list]:
        return self.spire.bundles[self.server]

    # the bundle: shared, any replica (or the Service) answers
    def get_bundle(self, timeout: float) -> Bundle:
        return Bundle(T.server(self.server).trust_domain, x509_authorities=tuple(
            X509Authority(c, t) for c, t in self._bundle.values()))  # fmt: skip

    def append_bundle(self, x509_authorities: list, timeout: float) -> Bundle:
        self.spire.change(self.server, "append", skid(x509_authorities[0]))
        for cert in x509_authorities:
            self._bundle.setdefault(skid(cert), [cert, False])
        return self.get_bundle(timeout)

    def list_agents(self, timeout: float) -> list:
        return []

    # LocalAuthority: the replica that takes the call
    def get_authority_state(self, kind: str, timeout: float) -> AuthorityStates:
        return self._me("state").states()

    def prepare_authority(self, kind: str, timeout: float) -> AuthorityState:
        r = self._me("prepare")
        self.spire.change(r.name, "prepare", self.spire.placed[r.server].signer)
        r.prepared = self.spire.mint(r)
        return r.prepared

    def activate_authority(self, aid: str, kind: str, timeout: float) -> AuthorityState:
        r = self._me("activate")
        assert r.prepared is not None and aid == r.prepared.authority_id, (r, aid)
        self.spire.change(r.name, "activate", aid)
        r.old, r.active, r.prepared = r.active, r.prepared, None
        return r.active

    def _validate(self, r: Replica, key: str) -> None:
        """SPIRE's validateUpstreamAuthoritySubjectKey, on the replica taking the call."""
        if key == r.active.upstream_authority_subject_key_id:
            raise InvalidArgumentError(_INVALID, "signs the current authority")
        if r.old is None or r.old.upstream_authority_subject_key_id != key:
            raise InvalidArgumentError(
                _INVALID, "upstream authority didn't sign the old local authority"
            )

    def taint_upstream_authority(self, key: str, timeout: float) -> str:
        r = self._me("taint")
        self._validate(r, key)
        if key not in self._bundle:
            raise NotFoundError(_NOT_FOUND, "no ca found with provided subject key ID")
        if self._bundle[key][1]:
            raise InvalidArgumentError(_INVALID, "root CA is already tainted")
        self.spire.change(r.name, "taint", key)
        self._bundle[key][1] = True
        if self.spire.root_of[r.served] == key:  # notified: this replica only
            r.served = r.active.authority_id
        return key

    def revoke_upstream_authority(self, key: str, timeout: float) -> str:
        r = self._me("revoke")
        self._validate(r, key)
        if key not in self._bundle:
            raise NotFoundError(_NOT_FOUND, "no root CA found with provided subject key ID")
        if not self._bundle[key][1]:
            raise InvalidArgumentError(_INVALID, "untainted root CA")
        self.spire.change(r.name, "revoke", key)
        del self._bundle[key]
        return key


@dataclass
class Double:
    spire: Spire
    ca_directory: Path
    topology: object = T
    target: str = "kubernetes"
    name: str = T.name

    def _names(self, server: str) -> list[str]:
        return [n for n, r in self.spire.replicas.items() if r.server == server]

    def server_replicas(self, name: str) -> tuple[ServerReplica, ...]:
        return tuple(ServerReplica(n, self.spire.ready.get(n, True)) for n in self._names(name))

    def replica_server(self, name: str, replica: str) -> Api:
        return Api(self.spire, name, self.spire.replicas[replica])

    def server(self, name: str) -> Api:
        (one,) = self._names(name) if name != HA_SERVER else (None,)
        return Api(self.spire, name, self.spire.replicas[one] if one else None)

    def replica_server_svid(self, name: str, replica: str) -> tuple[x509.Certificate, ...]:
        return self.spire.served_chain(self.spire.replicas[replica])

    def restart_replica(self, name: str, replica: str) -> None:
        """A replica with memory keys starts with a new authority under the placed CA."""
        self.spire.change(replica, "restart")
        r = self.spire.replicas[replica]
        r.active, r.prepared, r.old = self.spire.mint(r), None, None
        r.served = r.active.authority_id

    def place_signing_ca(self, server: str, ca: SigningCa) -> None:
        placed = Placed(x509.load_pem_x509_certificates(ca.chain),
                        serialization.load_pem_private_key(ca.key, None),
                        {skid(c) for c in x509.load_pem_x509_certificates(ca.root)})  # fmt: skip
        self.spire.change(server, "place", placed.signer)
        self.spire.placed[server] = placed


def _inter(store: CaStore, server: str) -> str:
    signing = store.signing_ca(T, T.server(server))
    assert signing is not None
    return skid(x509.load_pem_x509_certificates(signing.chain)[0])


def _root(store: CaStore) -> x509.Certificate:
    root = store.root(T)
    assert root is not None
    return root.certificate


@pytest.fixture
def double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Double:
    return _double(tmp_path, monkeypatch)


def _double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Double:
    monkeypatch.setattr(rr, "_holders_missing", lambda *a, **k: "")  # every holder has it
    nothing = SimpleNamespace(error="", authorities=(), agents=(), workloads=())
    monkeypatch.setattr(rr, "authorities_report", lambda d, names: SimpleNamespace(
        server=lambda name: nothing))  # no agent or workload SVID under the old root  # fmt: skip
    store = CaStore(tmp_path / "ca")
    store.ensure(T)
    spire = Spire(store)
    root = _root(store)
    for server, names in ((UPSTREAM, (f"{UPSTREAM}-0",)), (HA_SERVER, REPLICAS)):
        signing = store.signing_ca(T, T.server(server))
        assert signing is not None
        spire.bundles[server] = {skid(root): [root, False]}
        Double(spire, tmp_path / "ca").place_signing_ca(server, signing)
        for n in names:
            r = Replica(n, server, AuthorityState("", 0))
            r.active = spire.mint(r)
            r.served = r.active.authority_id
            spire.replicas[n] = r
    spire.calls.clear()
    spire.changes = 0
    return Double(spire, tmp_path / "ca")


def _assert_rotated(d: Double, old_root: str) -> None:
    store = CaStore(d.ca_directory)
    new_root = skid(_root(store))
    assert new_root != old_root
    assert store.generations().previous is None  # the old generation's keys are deleted
    for server in (UPSTREAM, HA_SERVER):
        assert set(d.spire.bundles[server]) == {new_root}, server
        for r in (r for r in d.spire.replicas.values() if r.server == server):
            inter = _inter(store, server)
            assert r.active.upstream_authority_subject_key_id == inter, r
            assert d.spire.root_of[r.served] == new_root, f"{r.name} serves under the old root"
    assert not [c for c in d.spire.calls if c[1].startswith("SPIRE revoked")], d.spire.calls


def test_the_bridge_taint_and_revoke_go_through_one_replica_and_the_other_is_rolled_first(
    double: Double,
) -> None:
    old_root = skid(_root(double.spire.store))
    result = rr.rotate_root(double, revoke=True, timeout=5)  # type: ignore[arg-type]
    _assert_rotated(double, old_root)
    calls = double.spire.calls
    taker, other = REPLICAS

    def who(what: str, arg: str | None = None) -> list[str]:
        return [c[0] for c in calls if c[1] == what and (arg is None or c[2] == arg)]

    # the bridge (a prepare under the old root itself) on the taker only
    assert who("prepare", old_root) == [f"{UPSTREAM}-0", taker]
    # the switch on every replica, under the new intermediate
    inter = _inter(CaStore(double.ca_directory), HA_SERVER)
    assert who("prepare", inter) == [taker, other]
    # the taint and the revoke once per trust domain, the downstream's through the taker
    assert who("taint") == [f"{UPSTREAM}-0", taker]
    assert who("revoke") == [f"{UPSTREAM}-0", taker]
    # the other replica restarted once, before the taint; the taker never
    assert who("restart") == [other]
    assert calls.index((other, "restart", "")) < calls.index((taker, "taint", old_root))
    # placed once per server for the switch (not per replica), again before the roll
    placed = [c[2] for c in calls if c[0] == HA_SERVER and c[1] == "place"]
    assert placed == [old_root, inter, inter]
    names = [s.name for s in result.steps]
    assert names.index(f"roll {other}") < names.index("taint old root")
    assert names.index("wait for renewals") < names.index("revoke old root")
    assert f"bridge {other}" not in names and f"roll {taker}" not in names
    assert result.revoked and result.old_root == old_root


def test_an_interrupted_rotation_resumes_from_spires_state_after_every_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted before each changing call in turn (the Nth), then run again: it ends
    rotated, the taint and the revoke taken once, the taker never restarted."""
    k = 0
    while True:
        d = _double(tmp_path / str(k), monkeypatch)
        old_root = skid(_root(d.spire.store))
        d.spire.fail_at = k
        try:
            rr.rotate_root(d, revoke=True, timeout=5)  # type: ignore[arg-type]
        except Interrupted:
            pass
        else:
            assert k > 20, f"only {k} changing calls: the double is not exercised"
            break
        d.spire.fail_at = -1
        rr.rotate_root(d, revoke=True, timeout=5)  # type: ignore[arg-type]
        _assert_rotated(d, old_root)
        done = [c for c in d.spire.calls if c[1] in ("taint", "revoke", "restart")]
        assert sorted(c[:2] for c in done) == sorted(
            [(f"{UPSTREAM}-0", "taint"), (f"{UPSTREAM}-0", "revoke"), (REPLICAS[0], "taint"),
             (REPLICAS[0], "revoke"), (REPLICAS[1], "restart")]), (k, done)  # fmt: skip
        k += 1


def test_already_tainted_on_a_replica_whose_cache_lagged_is_done_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Lagging:
        def __enter__(self) -> Lagging:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def taint_upstream_authority(self, key: str, timeout: float) -> str:
            raise InvalidArgumentError(_INVALID, "root CA is already tainted")

    run = SimpleNamespace(api=Lagging, replica=REPLICAS[1], server=T.server(HA_SERVER))
    monkeypatch.setattr(rr, "_bundle_roots", lambda run: {"old": False})  # a stale read
    monkeypatch.setattr(rr, "record_serials", lambda run: None)
    roots = SimpleNamespace(old_id="old")
    assert "tainted on" in rr._taint_through({HA_SERVER: run}, roots)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ready", "listed", "message"),
    [
        ({REPLICAS[1]: False}, REPLICAS, f"{HA_SERVER}: not ready: {REPLICAS[1]}"),
        ({}, REPLICAS[:1], f"{HA_SERVER}: 1 replica\\(s\\) found of 2"),
    ],
)
def test_a_replica_not_ready_or_missing_refuses_before_anything_changes(
    double: Double, ready: dict[str, bool], listed: tuple[str, ...], message: str
) -> None:
    double.spire.ready = ready
    for n in set(REPLICAS) - set(listed):
        del double.spire.replicas[n]
    with pytest.raises(RotationRefused, match=message):
        rr.rotate_root(double, revoke=True)  # type: ignore[arg-type]
    assert double.spire.calls == []
    assert CaStore(double.ca_directory).generations().next is None  # no new generation


def test_a_taker_restarted_before_the_taint_is_bridged_again(double: Double) -> None:
    """With memory keys a restarted replica forgets the bridge, and SPIRE takes the
    upstream taint only from a replica whose old authority the old root signed."""
    old_root = skid(_root(double.spire.store))
    double.spire.fail_at = next(  # interrupted at the downstream taint: count a clean run
        i for i, c in enumerate(_changes_of_a_clean_run()) if c == (REPLICAS[0], "taint")
    )
    with pytest.raises(Interrupted):
        rr.rotate_root(double, revoke=True, timeout=5)  # type: ignore[arg-type]
    double.spire.fail_at = -1
    double.restart_replica(HA_SERVER, REPLICAS[0])  # an eviction, say
    rr.rotate_root(double, revoke=True, timeout=5)  # type: ignore[arg-type]
    _assert_rotated(double, old_root)
    bridges = [c[0] for c in double.spire.calls if c[1] == "prepare" and c[2] == old_root]
    assert bridges == [f"{UPSTREAM}-0", REPLICAS[0], REPLICAS[0]]
    assert [c[0] for c in double.spire.calls if c[1] == "taint"] == [f"{UPSTREAM}-0", REPLICAS[0]]


def _changes_of_a_clean_run() -> list[tuple[str, str]]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        d = _double(Path(tmp), mp)
        rr.rotate_root(d, revoke=True, timeout=5)  # type: ignore[arg-type]
        return [c[:2] for c in d.spire.calls if not c[1].startswith("SPIRE")]


def test_the_local_target_restarts_no_replica_and_names_its_one_replica(tmp_path: Path) -> None:
    from spire_fabric.runtime.local import LocalDeployment, LocalSettings
    from spire_fabric.runtime.local.bootstrap import UpError
    from spire_fabric.topology import preset

    d = LocalDeployment.create(preset("basic"), tmp_path / "state", LocalSettings())
    with pytest.raises(UpError, match=r"runs one process per server .* --target kubernetes"):
        d.restart_replica("spire-server", "spire-server")
    with pytest.raises(KeyError, match="runs one local replica, 'spire-server', not 'x-1'"):
        d.replica_server_svid("spire-server", "x-1")  # before any connection
    assert not (tmp_path / "state").exists()
