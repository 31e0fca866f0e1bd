"""Model <-> protobuf conversion, kept out of the public API.

Round trips are exact: `entry_from_proto(entry_to_proto(e)) == e` for every field SPIRE
stores, which is what lets a reconciler diff desired entries against listed ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spire_fabric.identity import SpiffeId, TrustDomain
from spire_fabric.proto.spire.api.server.debug.v1 import debug_pb2
from spire_fabric.proto.spire.api.types import (
    agent_pb2,
    bundle_pb2,
    entry_pb2,
    federationrelationship_pb2,
    jointoken_pb2,
    jwtsvid_pb2,
    logger_pb2,
    selector_pb2,
    spiffeid_pb2,
    x509svid_pb2,
)
from spire_fabric.server._models import (
    AttestedAgent,
    AuthorityState,
    AuthorityStates,
    Bundle,
    CertInfo,
    Entry,
    EntryField,
    FederationRelationship,
    HttpsSpiffeProfile,
    HttpsWebProfile,
    JoinToken,
    JwtAuthority,
    LoggerLevels,
    LogLevel,
    MintedJwtSvid,
    Selector,
    ServerInfo,
    X509Authority,
)

_DER = serialization.Encoding.DER
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def id_to_proto(sid: SpiffeId) -> spiffeid_pb2.SPIFFEID:
    return spiffeid_pb2.SPIFFEID(trust_domain=sid.trust_domain.name, path=sid.path)


def id_from_proto(msg: spiffeid_pb2.SPIFFEID) -> SpiffeId:
    return SpiffeId(TrustDomain(msg.trust_domain), msg.path)


def selectors_to_proto(selectors: Iterable[Selector]) -> list[selector_pb2.Selector]:
    return [selector_pb2.Selector(type=s.type, value=s.value) for s in selectors]


def selectors_from_proto(msgs: Iterable[selector_pb2.Selector]) -> tuple[Selector, ...]:
    return tuple(Selector(m.type, m.value) for m in msgs)


def entry_to_proto(entry: Entry) -> entry_pb2.Entry:
    return entry_pb2.Entry(
        id=entry.id,
        spiffe_id=id_to_proto(entry.spiffe_id),
        parent_id=id_to_proto(entry.parent_id),
        selectors=selectors_to_proto(entry.selectors),
        x509_svid_ttl=entry.x509_svid_ttl,
        jwt_svid_ttl=entry.jwt_svid_ttl,
        federates_with=[td.name for td in entry.federates_with],
        admin=entry.admin,
        downstream=entry.downstream,
        expires_at=entry.expires_at,
        dns_names=list(entry.dns_names),
        revision_number=entry.revision_number,
        store_svid=entry.store_svid,
        hint=entry.hint,
        created_at=entry.created_at,
    )


def entries_from_proto(msgs: Iterable[entry_pb2.Entry]) -> list[Entry]:
    """A page of listed entries. The entries of a page share a few parents and trust
    domains: each distinct one is built (and checked) once and shared, which saves a fifth
    of the conversion at 10k entries (0.12 s -> 0.10 s of CPU), and their memory."""
    parents: dict[tuple[str, str], SpiffeId] = {}
    domains: dict[str, TrustDomain] = {}
    out = []
    for msg in msgs:
        key = (msg.parent_id.trust_domain, msg.parent_id.path)
        parent = parents.get(key)
        if parent is None:
            parent = parents[key] = id_from_proto(msg.parent_id)
        name = msg.spiffe_id.trust_domain
        domain = domains.get(name)
        if domain is None:
            domain = domains[name] = TrustDomain(name)
        out.append(entry_from_proto(msg, parent, domain))
    return out


def entry_from_proto(
    msg: entry_pb2.Entry,
    parent_id: SpiffeId | None = None,
    trust_domain: TrustDomain | None = None,
) -> Entry:
    """``parent_id``: the message's parent ID, and ``trust_domain`` its SPIFFE ID's trust
    domain, when the caller has them already (the entries of a page share a few)."""
    sid = msg.spiffe_id
    return Entry(
        id=msg.id,
        spiffe_id=SpiffeId(trust_domain or TrustDomain(sid.trust_domain), sid.path),
        parent_id=parent_id or id_from_proto(msg.parent_id),
        selectors=tuple([Selector(m.type, m.value) for m in msg.selectors]),
        x509_svid_ttl=msg.x509_svid_ttl,
        jwt_svid_ttl=msg.jwt_svid_ttl,
        federates_with=tuple([TrustDomain(td) for td in msg.federates_with]),
        admin=msg.admin,
        downstream=msg.downstream,
        expires_at=msg.expires_at,
        dns_names=tuple(msg.dns_names),
        revision_number=msg.revision_number,
        store_svid=msg.store_svid,
        hint=msg.hint,
        created_at=msg.created_at,
    )


def entry_mask(fields: frozenset[EntryField] | None) -> entry_pb2.EntryMask | None:
    """SPIRE's input mask; None (all fields) is sent as no mask, which SPIRE reads as all."""
    if fields is None:
        return None
    return entry_pb2.EntryMask(**{f.value: True for f in fields})


def agent_from_proto(msg: agent_pb2.Agent) -> AttestedAgent:
    return AttestedAgent(
        id=id_from_proto(msg.id),
        attestation_type=msg.attestation_type,
        x509svid_serial_number=msg.x509svid_serial_number,
        x509svid_expires_at=msg.x509svid_expires_at,
        selectors=selectors_from_proto(msg.selectors),
        banned=msg.banned,
        can_reattest=msg.can_reattest,
    )


def bundle_to_proto(bundle: Bundle) -> bundle_pb2.Bundle:
    return bundle_pb2.Bundle(
        trust_domain=bundle.trust_domain.name,
        x509_authorities=[x509_authority_to_proto(a) for a in bundle.x509_authorities],
        jwt_authorities=[jwt_authority_to_proto(a) for a in bundle.jwt_authorities],
        refresh_hint=bundle.refresh_hint,
        sequence_number=bundle.sequence_number,
    )


def x509_authority_to_proto(authority: X509Authority) -> bundle_pb2.X509Certificate:
    return bundle_pb2.X509Certificate(
        asn1=authority.certificate.public_bytes(_DER), tainted=authority.tainted
    )


def jwt_authority_to_proto(authority: JwtAuthority) -> bundle_pb2.JWTKey:
    return bundle_pb2.JWTKey(
        public_key=authority.public_key.public_bytes(_DER, _SPKI),
        key_id=authority.key_id,
        expires_at=authority.expires_at,
        tainted=authority.tainted,
    )


def bundle_from_proto(msg: bundle_pb2.Bundle) -> Bundle:
    return Bundle(
        trust_domain=TrustDomain(msg.trust_domain),
        x509_authorities=tuple(
            X509Authority(x509.load_der_x509_certificate(a.asn1), a.tainted)
            for a in msg.x509_authorities
        ),
        jwt_authorities=tuple(
            JwtAuthority(
                key_id=k.key_id,
                public_key=serialization.load_der_public_key(k.public_key),
                expires_at=k.expires_at,
                tainted=k.tainted,
            )
            for k in msg.jwt_authorities
        ),
        refresh_hint=msg.refresh_hint,
        sequence_number=msg.sequence_number,
    )


def relationship_to_proto(
    rel: FederationRelationship,
) -> federationrelationship_pb2.FederationRelationship:
    msg = federationrelationship_pb2.FederationRelationship(
        trust_domain=rel.trust_domain.name, bundle_endpoint_url=rel.bundle_endpoint_url
    )
    if isinstance(rel.profile, HttpsSpiffeProfile):
        msg.https_spiffe.endpoint_spiffe_id = str(rel.profile.endpoint_spiffe_id)
    else:
        msg.https_web.SetInParent()
    if rel.trust_domain_bundle is not None:
        msg.trust_domain_bundle.CopyFrom(bundle_to_proto(rel.trust_domain_bundle))
    return msg


def relationship_from_proto(
    msg: federationrelationship_pb2.FederationRelationship,
) -> FederationRelationship:
    profile: HttpsWebProfile | HttpsSpiffeProfile
    if msg.WhichOneof("bundle_endpoint_profile") == "https_spiffe":
        profile = HttpsSpiffeProfile(SpiffeId.parse(msg.https_spiffe.endpoint_spiffe_id))
    else:
        profile = HttpsWebProfile()
    bundle = (
        bundle_from_proto(msg.trust_domain_bundle) if msg.HasField("trust_domain_bundle") else None
    )
    return FederationRelationship(
        trust_domain=TrustDomain(msg.trust_domain),
        bundle_endpoint_url=msg.bundle_endpoint_url,
        profile=profile,
        trust_domain_bundle=bundle,
    )


def join_token_from_proto(msg: jointoken_pb2.JoinToken) -> JoinToken:
    return JoinToken(value=msg.value, expires_at=msg.expires_at)


def server_info_from_proto(msg: debug_pb2.GetInfoResponse) -> ServerInfo:
    chain = tuple(
        CertInfo(
            id=id_from_proto(c.id) if c.HasField("id") and c.id.trust_domain else None,
            expires_at=c.expires_at,
            subject=c.subject,
        )
        for c in msg.svid_chain
    )
    return ServerInfo(
        uptime_seconds=msg.uptime,
        agents_count=msg.agents_count,
        entries_count=msg.entries_count,
        federated_bundles_count=msg.federated_bundles_count,
        svid_chain=chain,
    )


def authority_state_from_proto(msg: Any) -> AuthorityState | None:
    """None for an unset state (SPIRE leaves ``prepared``/``old`` empty when there is none)."""
    if not msg.authority_id:
        return None
    return AuthorityState(
        authority_id=msg.authority_id,
        expires_at=msg.expires_at,
        upstream_authority_subject_key_id=msg.upstream_authority_subject_key_id,
    )


def authority_states_from_proto(msg: Any) -> AuthorityStates:
    return AuthorityStates(
        active=authority_state_from_proto(msg.active),
        prepared=authority_state_from_proto(msg.prepared),
        old=authority_state_from_proto(msg.old),
    )


def logger_from_proto(msg: logger_pb2.Logger) -> LoggerLevels:
    return LoggerLevels(current=LogLevel(msg.current_level), launch=LogLevel(msg.launch_level))


def jwt_svid_from_proto(msg: jwtsvid_pb2.JWTSVID) -> MintedJwtSvid:
    return MintedJwtSvid(
        token=msg.token,
        spiffe_id=id_from_proto(msg.id),
        expires_at=msg.expires_at,
        issued_at=msg.issued_at,
        hint=msg.hint,
    )


def x509_chain_from_proto(msg: x509svid_pb2.X509SVID) -> tuple[x509.Certificate, ...]:
    return tuple(x509.load_der_x509_certificate(der) for der in msg.cert_chain)
