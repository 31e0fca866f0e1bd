"""Which authorities each server of a deployment signs with, and who depends on them.

Why a report of its own: rotating or revoking an authority (a key-compromise drill) is
safe only when every agent and federated peer already holds the next key and nothing
still chains to the old one. SPIRE reports the pieces in different places: the
LocalAuthority API names the active, prepared and old authorities; the bundle says
which are tainted; ListAgents gives each agent's SVID serial; workload SVIDs and
federated copies are seen only by asking the agents and the peers. This gathers them,
per server, through the `Deployment` interface, so every target reports the same facts.

What is counted (and nothing is guessed):

- an agent chains to the authority whose key ID is its SVID's authority key ID, read from
  the SVID the agent stores (`Deployment.agent_svid_chain`) when its serial is the one the
  server reports; where a target cannot read it, the agent is listed without authority;
- a workload's X.509-SVID chains to the authority named by its leaf's authority key ID,
  as the workload's agent serves it (`Deployment.x509_context`); its JWT-SVID to the key
  named by the token's ``kid`` (`Deployment.jwt_svid`, audience :data:`PROBE_AUDIENCE`);
- a federated peer's copy of the bundle (the peer server's ``GetFederatedBundle``)
  equals the bundle when it holds the same X.509 authorities and JWT keys;
- for a server of several replicas, the bundle's own authorities (`BundleAuthority`) and
  the CAs each workload's X.509-SVID chain verifies through up to a bundle root: every
  replica holds its own keys, so after a replica is gone (a pod lost, its memory keys with
  it) SVIDs it signed are still out there, held by no live replica, yet still trusted.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from spire_fabric.errors import SpireFabricError
from spire_fabric.identity import BundleSet, X509Bundle, verify_x509_svid
from spire_fabric.runtime.deployment import Deployment
from spire_fabric.server import (
    AttestedAgent,
    AuthorityStates,
    Bundle,
    NotFoundError,
)
from spire_fabric.topology import (
    DiskUpstreamAuthority,
    Server,
    SpireUpstreamAuthority,
    Topology,
    format_duration,
    server_replicas,
)
from spire_fabric.verify._reads import IdentityReads

__all__ = [
    "PROBE_AUDIENCE",
    "AgentSvidSource",
    "AuthoritiesError",
    "AuthoritiesReport",
    "AuthorityRow",
    "BundleAuthority",
    "LeakExposure",
    "PeerCopy",
    "ServerAuthorities",
    "UpstreamRow",
    "WorkloadSvidSource",
    "authorities_report",
]

PROBE_AUDIENCE = "spire-fabric-authorities"
"""The audience of the JWT-SVID fetched for each workload to see which key signs it."""

Kind = Literal["x509", "jwt"]
Slot = Literal["active", "prepared", "old"]
_Row = TypeVar("_Row")
_SLOTS: tuple[Slot, ...] = ("active", "prepared", "old")


class AuthoritiesError(SpireFabricError):
    """The report was asked for something the deployment does not have (a server name)."""


@dataclass(frozen=True)
class AuthorityRow:
    """One authority of a server: its slot, expiry, whether the bundle holds it and has
    it tainted, and how many agents and workload SVIDs chain to it (``None``: not
    applicable, agents hold no JWT-SVID)."""

    kind: Kind
    slot: Slot
    authority_id: str
    expires_at: int
    upstream_authority_subject_key_id: str
    in_bundle: bool
    tainted: bool
    agents: int | None
    workload_svids: int


@dataclass(frozen=True)
class UpstreamRow:
    """An upstream authority that signed one of the server's X.509 authorities. The bundle
    holds it only when it is itself a root (else its root is there: ``in_bundle`` False).

    ``expires_at`` is its certificate's NotAfter and ``root_*`` the bundle root it chains
    to (itself when it is one), read from the bundle or from the chains the workloads and
    agents are served; 0 and "" when no such certificate was seen."""

    subject_key_id: str
    signs: tuple[Slot, ...]
    in_bundle: bool
    tainted: bool
    expires_at: int = 0
    root_subject_key_id: str = ""
    root_expires_at: int = 0
    root_tainted: bool = False


@dataclass(frozen=True)
class AgentSvidSource:
    """An agent of the server and the authority its current SVID chains to (``""``: not
    observable here; ``detail`` says why)."""

    agent: str  # the topology's name, or "" for an agent the topology does not name
    spiffe_id: str
    serial_number: str
    expires_at: int
    authority_id: str
    detail: str = ""


@dataclass(frozen=True)
class WorkloadSvidSource:
    """A workload of the server: which authority its X.509-SVID and which key its JWT-SVID
    come from (``""`` with ``detail`` when it could not be fetched).

    ``x509_chain``: the subject key IDs of the CAs its served chain verifies through
    against the server's bundle, from the CA that signed it up to the bundle root that
    anchors it; empty when the chain does not verify. How an SVID from a CA that no live
    replica holds any more (its replica is gone) is told from one that is not trusted."""

    workload: str
    spiffe_id: str
    x509_authority_id: str
    x509_expires_at: int
    jwt_key_id: str
    detail: str = ""
    x509_chain: tuple[str, ...] = ()


@dataclass(frozen=True)
class BundleAuthority:
    """An authority the server's bundle holds: an X.509 root (by subject key ID, expiry its
    NotAfter) or a JWT key (by key ID, expiry as the bundle says, 0 for none). What an SVID
    from a replica that is gone is judged by: whether its key (or its root) is still in
    the bundle, and tainted."""

    kind: Kind
    authority_id: str
    expires_at: int
    tainted: bool


@dataclass(frozen=True)
class PeerCopy:
    """A federated peer's copy of this server's bundle. ``missing`` are authorities of the
    bundle the copy lacks, ``extra`` authorities the copy still has (X.509 by subject key
    ID, JWT by key ID)."""

    peer: str
    held: bool
    equal: bool
    sequence_number: int
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    detail: str = ""

    @property
    def difference(self) -> str:
        """How the copy differs, in words ("" when it is equal): what `authorities` prints
        and verify's copy check says."""
        if self.equal:
            return ""
        parts = [f"lacks {', '.join(self.missing)}" if self.missing else "",
                 f"still has {', '.join(self.extra)}" if self.extra else ""]  # fmt: skip
        return self.detail or "; ".join(p for p in parts if p) or "its keys differ"


@dataclass(frozen=True)
class LeakExposure:
    """What a leaked key of the intermediate a server signs under means, from the
    topology's TTLs: its holder can mint any identity of the trust domain (name
    constraints stop it at the trust domain) until the intermediate expires. Rotating the
    server's X.509 authority does not end that, since what it mints chains to the
    unchanged root; only ``rotate root --revoke`` does. ``window_seconds`` is the
    intermediate's TTL; ``svid_ttl_seconds`` and ``ca_ttl_seconds`` bound what the
    server's own authority signed."""

    intermediate: str
    window_seconds: int
    svid_ttl_seconds: int
    ca_ttl_seconds: int
    text: str


@dataclass(frozen=True)
class ServerAuthorities:
    """Everything the report says about one server (``error``: it could not be asked).

    ``replicas``: how many the topology runs on this target; ``authorities`` are then those
    of the replicas that were ready (each asked through its own API), and
    ``bundle_authorities`` what the shared bundle holds, which outlives a replica."""

    server: str
    trust_domain: str
    bundle_sequence_number: int = 0
    authorities: tuple[AuthorityRow, ...] = ()
    upstream: tuple[UpstreamRow, ...] = ()
    agents: tuple[AgentSvidSource, ...] = ()
    workloads: tuple[WorkloadSvidSource, ...] = ()
    peers: tuple[PeerCopy, ...] = ()
    leaked_intermediate: LeakExposure | None = None
    error: str = ""
    replicas: int = 1
    bundle_authorities: tuple[BundleAuthority, ...] = ()

    def authority(self, kind: Kind, slot: Slot) -> AuthorityRow | None:
        """The authority of that kind in that slot, or None (no prepared one, say)."""
        for row in self.authorities:
            if row.kind == kind and row.slot == slot:
                return row
        return None


@dataclass(frozen=True)
class AuthoritiesReport:
    """The authorities of a deployment's servers (``deploy authorities``)."""

    deployment: str
    target: str
    servers: tuple[ServerAuthorities, ...] = field(default_factory=tuple)

    def server(self, name: str) -> ServerAuthorities:
        """The section of one server; KeyError naming the servers there are."""
        for s in self.servers:
            if s.server == name:
                return s
        raise KeyError(f"{name!r} is not in this report ({', '.join(self.names)})")

    @property
    def names(self) -> tuple[str, ...]:
        """The servers reported, in order."""
        return tuple(s.server for s in self.servers)

    @property
    def ok(self) -> bool:
        """Every server answered and every peer's copy equals the bundle."""
        return all(not s.error and all(p.equal for p in s.peers) for s in self.servers)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (what the JSON says)."""
        return asdict(self)

    def to_json(self) -> str:
        """The report as JSON (what ``authorities --output json`` prints)."""
        return json.dumps(self.to_dict(), indent=2)

    def __repr__(self) -> str:
        return f"AuthoritiesReport({self.deployment!r}: {', '.join(self.names)})"

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.authorities(self)


# ---- building it ------------------------------------------------------------------------


def authorities_report(
    deployment: Deployment,
    servers: Iterable[str] | None = None,
    reads: IdentityReads | None = None,
) -> AuthoritiesReport:
    """The report for ``servers`` (default: every server of the topology, in order).

    A server that cannot be asked gets a section with ``error`` and the others are still
    reported; an unknown server name raises :class:`AuthoritiesError` naming the known.
    ``reads``: the workloads' identities as the caller already reads them (`verify`),
    else read here, each workload once and all of a server's at the same time."""
    t = deployment.topology
    known = [s.name for s in t.servers]
    chosen = known if servers is None else list(servers)
    for name in chosen:
        if name not in known:
            raise AuthoritiesError(
                f"no server {name!r} in topology {t.name!r}; its servers: {', '.join(known)}"
            )
    if reads is None:
        with IdentityReads(deployment) as own:
            return authorities_report(deployment, chosen, own)
    sections = tuple(_server_section(deployment, t.server(name), reads) for name in chosen)
    return AuthoritiesReport(deployment.name, str(deployment.target), sections)


def report_views(t: Topology, server: Server) -> dict[str, list[str]]:
    """The identity views the section of ``server`` reads, by workload: its X.509 context
    and a JWT-SVID for :data:`PROBE_AUDIENCE` (to :meth:`IdentityReads.prefetch`)."""
    return {w: [PROBE_AUDIENCE] for w in _served_by(t, server)}


def _server_section(d: Deployment, s: Server, reads: IdentityReads) -> ServerAuthorities:
    try:
        with d.server(s.name) as client:
            x509_states = client.get_authority_state("x509", timeout=10)
            jwt_states = client.get_authority_state("jwt", timeout=10)
            bundle = client.get_bundle(timeout=10)
            listed = list(client.list_agents(timeout=10))
    except Exception as err:  # a server that is down is a finding, not a crash
        return ServerAuthorities(s.name, s.trust_domain.name, error=_one_line(err))
    reads.prefetch(report_views(d.topology, s))  # while the agents are looked at
    try:
        pairs = _replica_states(d, s) or [(x509_states, jwt_states)]
    except Exception as err:
        return ServerAuthorities(s.name, s.trust_domain.name, error=_one_line(err))
    seen: dict[str, x509.Certificate] = {}  # CA certificates of the chains served, by SKID
    agents = tuple(_agent_sources(d, s, listed, seen))
    workloads = tuple(_workload_sources(d, s, seen, reads, bundle))
    rows = _first_of_each(
        (row for x, j in pairs for row in _authority_rows(x, j, bundle, agents, workloads)),
        lambda r: (r.kind, r.authority_id),
    )
    upstream = _first_of_each(
        (row for x, _ in pairs for row in _upstream_rows(x, bundle, seen)),
        lambda u: u.subject_key_id,
    )
    return ServerAuthorities(
        server=s.name,
        trust_domain=s.trust_domain.name,
        bundle_sequence_number=bundle.sequence_number,
        authorities=rows,
        upstream=upstream,
        agents=agents,
        workloads=workloads,
        peers=tuple(_peer_copies(d, s, bundle)),
        leaked_intermediate=leak_exposure(d.topology, s),
        replicas=server_replicas(s, d.target),
        bundle_authorities=_bundle_authorities(bundle),
    )


def _bundle_authorities(bundle: Bundle) -> tuple[BundleAuthority, ...]:
    x509_rows = tuple(BundleAuthority("x509", skid(a.certificate), _not_after(a.certificate),
                                      a.tainted) for a in bundle.x509_authorities)  # fmt: skip
    return x509_rows + tuple(BundleAuthority("jwt", k.key_id, k.expires_at, k.tainted)
                             for k in bundle.jwt_authorities)  # fmt: skip


def _replica_states(d: Deployment, s: Server) -> list[tuple[AuthorityStates, AuthorityStates]]:
    """(X.509, JWT) authority states of each ready replica, each from its own API: every
    replica holds its own authorities, and an SVID one of them signed is "none of the
    server's" to another. Empty for a server of one replica (its Service answers)."""
    if server_replicas(s, d.target) <= 1:
        return []
    out = []
    for r in d.server_replicas(s.name):
        if r.ready:
            with d.replica_server(s.name, r.name) as client:
                out.append((client.get_authority_state("x509", timeout=10),
                            client.get_authority_state("jwt", timeout=10)))  # fmt: skip
    return out


def _first_of_each(rows: Iterable[_Row], key: Callable[[_Row], object]) -> tuple[_Row, ...]:
    """``rows`` without repeats of ``key`` (two replicas report the same upstream)."""
    out: dict[object, _Row] = {}
    for row in rows:
        out.setdefault(key(row), row)
    return tuple(out.values())


def leak_exposure(t: Topology, s: Server) -> LeakExposure | None:
    """What a leaked key of ``s``'s intermediate exposes, and for how long (None: the
    server signs under no intermediate of the topology's hierarchy)."""
    ua = s.upstream_authority
    inter = next((i for i in t.ca.intermediates if isinstance(ua, DiskUpstreamAuthority)
                  and i.name == ua.ca), None) if t.ca else None  # fmt: skip
    if inter is None:
        return None
    window = int(inter.ttl.total_seconds())
    svid, ca = int(s.default_x509_svid_ttl.total_seconds()), int(s.ca_ttl.total_seconds())
    text = (
        f"a leaked key of intermediate {inter.name} lets its holder mint any "
        f"{s.trust_domain.name} identity until the intermediate expires (up to "
        f"{format_duration(inter.ttl)} after it was issued); rotate x509 does not end it, "
        "`rotate root --revoke` does. A leaked key of this server's X.509 authority: what "
        f"it mints is valid until that authority expires (CA TTL {format_duration(s.ca_ttl)}),"
        f" what it signed before a rotation for up to the X.509-SVID TTL "
        f"({format_duration(s.default_x509_svid_ttl)})"
    )
    return LeakExposure(inter.name, window, svid, ca, text)


def _authority_rows(
    x509_states: AuthorityStates,
    jwt_states: AuthorityStates,
    bundle: Bundle,
    agents: tuple[AgentSvidSource, ...],
    workloads: tuple[WorkloadSvidSource, ...],
) -> tuple[AuthorityRow, ...]:
    x509_held = {skid(a.certificate): a.tainted for a in bundle.x509_authorities}
    jwt_held = {a.key_id: a.tainted for a in bundle.jwt_authorities}
    rows: list[AuthorityRow] = []
    for slot in _SLOTS:
        state = getattr(x509_states, slot)
        if state is not None:
            aid = state.authority_id
            rows.append(
                AuthorityRow(
                    "x509", slot, aid, state.expires_at,
                    state.upstream_authority_subject_key_id,
                    in_bundle=aid in x509_held,
                    tainted=x509_held.get(aid, False),
                    agents=sum(1 for a in agents if a.authority_id == aid),
                    workload_svids=sum(1 for w in workloads if w.x509_authority_id == aid),
                )
            )  # fmt: skip
    for slot in _SLOTS:
        state = getattr(jwt_states, slot)
        if state is not None:
            aid = state.authority_id
            rows.append(
                AuthorityRow(
                    "jwt", slot, aid, state.expires_at, "",
                    in_bundle=aid in jwt_held,
                    tainted=jwt_held.get(aid, False),
                    agents=None,
                    workload_svids=sum(1 for w in workloads if w.jwt_key_id == aid),
                )
            )  # fmt: skip
    return tuple(rows)


def _upstream_rows(
    states: AuthorityStates, bundle: Bundle, seen: dict[str, x509.Certificate]
) -> tuple[UpstreamRow, ...]:
    held = {skid(a.certificate): a.tainted for a in bundle.x509_authorities}
    certs = {**seen, **{skid(a.certificate): a.certificate for a in bundle.x509_authorities}}
    signs: dict[str, list[Slot]] = {}
    for slot in _SLOTS:
        state = getattr(states, slot)
        if state is not None and state.upstream_authority_subject_key_id:
            signs.setdefault(state.upstream_authority_subject_key_id, []).append(slot)
    rows = []
    for key_id, slots in signs.items():
        root = key_id
        while root not in held and root in certs and authority_key_id(certs[root]) not in (
            "", root
        ):  # up the chain to the bundle's root (an intermediate names its issuer)
            root = authority_key_id(certs[root])
        root = root if root in held else ""
        rows.append(
            UpstreamRow(
                key_id, tuple(slots), key_id in held, held.get(key_id, False),
                expires_at=_not_after(certs.get(key_id)),
                root_subject_key_id=root,
                root_expires_at=_not_after(certs.get(root)),
                root_tainted=held.get(root, False),
            )
        )  # fmt: skip
    return tuple(rows)


def _not_after(cert: x509.Certificate | None) -> int:
    return 0 if cert is None else int(cert.not_valid_after_utc.timestamp())


def _remember_cas(chain: Iterable[x509.Certificate], seen: dict[str, x509.Certificate]) -> None:
    """Keep the CA certificates of a served chain (all but the leaf) by subject key ID:
    how an intermediate upstream authority, never in the bundle, is seen at all."""
    for cert in list(chain)[1:]:
        seen.setdefault(skid(cert), cert)


def _agent_sources(
    d: Deployment, s: Server, listed: list[AttestedAgent], seen: dict[str, x509.Certificate]
) -> Iterable[AgentSvidSource]:
    named = {}
    for a in d.topology.agents:
        if a.server == s.name:
            try:
                agent_id = d.agent_id(a.name)
            except Exception:  # an agent the target cannot describe stays unnamed
                agent_id = None
            if agent_id is not None:
                named[str(agent_id)] = a.name
    for agent in listed:
        name = named.get(str(agent.id), "")
        aid, detail = "", "not named by the topology"
        if name:
            aid, detail = _agent_authority(d, name, agent, seen)
        yield AgentSvidSource(
            name, str(agent.id), agent.x509svid_serial_number, agent.x509svid_expires_at,
            aid, detail,
        )  # fmt: skip


def _agent_authority(
    d: Deployment, name: str, agent: AttestedAgent, seen: dict[str, x509.Certificate]
) -> tuple[str, str]:
    try:
        chain = d.agent_svid_chain(name)
    except Exception as err:
        return "", f"its SVID could not be read: {_one_line(err)}"
    if not chain:
        return "", f"the {d.target} target gives no SVID of it (unreadable there, or not yet)"
    if str(chain[0].serial_number) != agent.x509svid_serial_number:
        return "", "the SVID it stores is not the one the server reports (renewing)"
    _remember_cas(chain, seen)
    return authority_key_id(chain[0]), ""


def _served_by(t: Topology, s: Server) -> list[str]:
    """The workloads whose agent belongs to ``s``, except a nested server's own identity
    (only that server process holds it; `verify` proves it another way)."""
    nested = {x.name for x in t.servers if isinstance(x.upstream_authority, SpireUpstreamAuthority)}
    agents = {a.name for a in t.agents if a.server == s.name}
    return [w.name for w in t.workloads if w.agent in agents and w.name not in nested]


def _workload_sources(
    d: Deployment,
    s: Server,
    seen: dict[str, x509.Certificate],
    reads: IdentityReads,
    bundle: Bundle,
) -> Iterable[WorkloadSvidSource]:
    t = d.topology
    for name in _served_by(t, s):
        w = t.workload(name)
        x509_id, expires, kid, problems = "", 0, "", []
        chain: tuple[str, ...] = ()
        try:
            svid = next(v for v in reads.x509_context(name).svids
                        if str(v.spiffe_id) == w.spiffe_id)  # fmt: skip
            x509_id = authority_key_id(svid.leaf)
            expires = int(svid.leaf.not_valid_after_utc.timestamp())
            _remember_cas(svid.cert_chain, seen)
            chain = _verified_cas(svid.cert_chain, bundle)
        except StopIteration:
            problems.append(f"its agent serves no X.509-SVID for {w.spiffe_id}")
        except Exception as err:
            problems.append(f"no X.509-SVID: {_one_line(err)}")
        try:
            kid = jwt_key_id(reads.jwt_svid(name, PROBE_AUDIENCE).marshal())
        except Exception as err:
            problems.append(f"no JWT-SVID: {_one_line(err)}")
        yield WorkloadSvidSource(name, w.spiffe_id, x509_id, expires, kid, "; ".join(problems),
                                 x509_chain=chain)  # fmt: skip


def _verified_cas(chain: Iterable[x509.Certificate], bundle: Bundle) -> tuple[str, ...]:
    """The subject key IDs of the CAs ``chain`` (leaf first) verifies through against the
    bundle's roots, up to the root that anchors it; () when it does not verify. Verified,
    not read off the extensions: an authority key ID alone is what a forger writes too."""
    roots = X509Bundle(bundle.trust_domain, tuple(a.certificate for a in bundle.x509_authorities))
    try:
        _, verified = verify_x509_svid(list(chain), BundleSet([roots]))
    except Exception:  # any refusal: the check says the chain does not verify
        return ()
    return tuple(skid(c) for c in verified[1:])


def _peer_copies(d: Deployment, s: Server, bundle: Bundle) -> Iterable[PeerCopy]:
    peers = [f.server for f in d.topology.federations if f.trust_domain == s.trust_domain]
    own = _authority_ids(bundle)
    for peer in dict.fromkeys(peers):
        try:
            with d.server(peer) as client:
                copy = client.get_federated_bundle(s.trust_domain, timeout=10)
        except NotFoundError:
            yield PeerCopy(peer, held=False, equal=False, sequence_number=0,
                           missing=tuple(sorted(own)), detail="holds no copy")  # fmt: skip
            continue
        except Exception as err:
            yield PeerCopy(peer, held=False, equal=False, sequence_number=0,
                           detail=f"could not be asked: {_one_line(err)}")  # fmt: skip
            continue
        theirs = _authority_ids(copy)
        yield PeerCopy(
            peer,
            held=True,
            equal=_same_keys(bundle, copy),
            sequence_number=copy.sequence_number,
            missing=tuple(sorted(set(own) - set(theirs))),
            extra=tuple(sorted(set(theirs) - set(own))),
        )


def _authority_ids(bundle: Bundle) -> dict[str, bytes]:
    """Each authority of a bundle by its ID (X.509: subject key ID; JWT: key ID) with the
    bytes that must be equal for two copies to be the same (DER; the key ID and key)."""
    ids = {skid(a.certificate): a.certificate.public_bytes(Encoding.DER)
           for a in bundle.x509_authorities}  # fmt: skip
    for k in bundle.jwt_authorities:
        ids[f"jwt:{k.key_id}"] = k.public_key.public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
    return ids


def _same_keys(a: Bundle, b: Bundle) -> bool:
    return _authority_ids(a) == _authority_ids(b)


# ---- small readers ----------------------------------------------------------------------


def skid(cert: x509.Certificate) -> str:
    """The certificate's subject key ID in hex, as SPIRE names X.509 authorities (a
    certificate without one is named by its SHA-256 fingerprint)."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    except x509.ExtensionNotFound:
        return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def authority_key_id(cert: x509.Certificate) -> str:
    """The key ID of the authority that signed ``cert`` (hex), "" without the extension."""
    try:
        value = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return ""
    return value.key_identifier.hex() if value.key_identifier else ""


def jwt_key_id(token: str) -> str:
    """The ``kid`` of a JWT's header: the JWT authority that signed it."""
    header = token.split(".", 1)[0]
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    return str(decoded.get("kid", ""))


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
