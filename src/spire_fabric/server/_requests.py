"""Request building and response parsing shared by the sync and async clients.

Every public client method is `send(self._ops.<method>(...))`: local validation happens
here, before a `Call` exists, so bad input never costs an RPC. The retry rule of each
method is the `idempotent` flag set here, and documented on the public method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, Literal, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID
from google.protobuf import wrappers_pb2

from spire_fabric.identity import SpiffeId, TrustDomain
from spire_fabric.proto.spire.api.server.agent.v1 import agent_pb2
from spire_fabric.proto.spire.api.server.bundle.v1 import bundle_pb2 as bundle_api_pb2
from spire_fabric.proto.spire.api.server.debug.v1 import debug_pb2
from spire_fabric.proto.spire.api.server.entry.v1 import entry_pb2 as entry_api_pb2
from spire_fabric.proto.spire.api.server.localauthority.v1 import localauthority_pb2 as la_pb2
from spire_fabric.proto.spire.api.server.logger.v1 import logger_pb2 as logger_api_pb2
from spire_fabric.proto.spire.api.server.svid.v1 import svid_pb2
from spire_fabric.proto.spire.api.server.trustdomain.v1 import trustdomain_pb2
from spire_fabric.proto.spire.api.types import (
    federateswith_pb2,
    federationrelationship_pb2,
    selector_pb2,
)
from spire_fabric.proto.spire.api.types import logger_pb2 as types_logger_pb2
from spire_fabric.server import _convert as cv
from spire_fabric.server._calls import Batch, Call, Outcome, Paged, chunked, status_outcome
from spire_fabric.server._errors import SpireValidationError
from spire_fabric.server._models import (
    AttestedAgent,
    AuthorityState,
    AuthorityStates,
    Bundle,
    Entry,
    EntryField,
    FederationRelationship,
    JoinToken,
    JwtAuthority,
    LoggerLevels,
    LogLevel,
    MatchBehavior,
    MintedJwtSvid,
    MintedX509Svid,
    SelectorLike,
    ServerInfo,
    X509Authority,
    fields_arg,
    non_empty,
    selectors_arg,
    spiffe_id_arg,
    trust_domain_arg,
    ttl_arg,
)

# Chunk limits for batch RPCs (see _calls.chunked for why bytes matter more than count).
MAX_BATCH_ITEMS = 1000
MAX_BATCH_BYTES = 2 * 1024 * 1024
DEFAULT_PAGE_SIZE = 1000

_DELETE_MODES = {
    "restrict": bundle_api_pb2.BatchDeleteFederatedBundleRequest.RESTRICT,
    "delete": bundle_api_pb2.BatchDeleteFederatedBundleRequest.DELETE,
    "dissociate": bundle_api_pb2.BatchDeleteFederatedBundleRequest.DISSOCIATE,
}


def _identity(msg: object) -> object:
    return msg


def _none(_: object) -> None:
    return None


def _selector_match(match: MatchBehavior) -> selector_pb2.SelectorMatch.MatchBehavior:
    # Our MatchBehavior mirrors the proto enum value for value (MATCH_EXACT = 0, ...).
    return cast("selector_pb2.SelectorMatch.MatchBehavior", int(MatchBehavior(match)))


def _federates_with_match(
    match: MatchBehavior,
) -> federateswith_pb2.FederatesWithMatch.MatchBehavior:
    return cast("federateswith_pb2.FederatesWithMatch.MatchBehavior", int(MatchBehavior(match)))
AuthorityKind = Literal["x509", "jwt"]
_AUTHORITY_KINDS: dict[str, str] = {"x509": "X509", "jwt": "JWT"}


def _authority_kind(kind: object) -> str:
    """SPIRE's spelling of an authority kind in method names (``X509``, ``JWT``)."""
    if not isinstance(kind, str) or kind not in _AUTHORITY_KINDS:
        raise SpireValidationError(
            f"authority kind must be one of {sorted(_AUTHORITY_KINDS)}, got {kind!r}"
        )
    return _AUTHORITY_KINDS[kind]


def _authority_id(authority_id: object, what: str) -> str:
    if not isinstance(authority_id, str) or not authority_id:
        raise SpireValidationError(
            f"{what} must be a non-empty string (from get_authority_state), got {authority_id!r}"
        )
    return authority_id


def _answered_authority(field: str) -> Callable[[Any], AuthorityState]:
    """The parser of a response that carries one authority state in ``field``."""

    def parse(msg: Any) -> AuthorityState:
        state = cv.authority_state_from_proto(getattr(msg, field))
        if state is None:  # pragma: no cover - SPIRE always names the authority it acted on
            raise SpireValidationError(f"the server answered without {field}")
        return state

    return parse


def _upstream_subject_key_id(msg: Any) -> str:
    return str(msg.upstream_authority_subject_key_id)


def _page_size(page_size: int) -> int:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise SpireValidationError(f"page_size must be a positive int, got {page_size!r}")
    return page_size


def _bool_value(value: bool | None) -> wrappers_pb2.BoolValue | None:
    return None if value is None else wrappers_pb2.BoolValue(value=value)


def _go_time(when: datetime) -> str:
    """The layout SPIRE parses agent expiry filters with: "2006-01-02 15:04:05 -0700 -07"."""
    if when.tzinfo is None:
        raise SpireValidationError("expires_before must be timezone-aware (e.g. UTC)")
    utc = when.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%d %H:%M:%S +0000 +00")


class ServerApi:
    """Builds every call of the SPIRE Server API (no I/O)."""

    def __init__(self, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.page_size = _page_size(page_size)

    # ---- entries ---------------------------------------------------------------------

    def _entry_filter(
        self,
        cls: type,
        spiffe_id: SpiffeId | str | None = None,
        parent_id: SpiffeId | str | None = None,
        selectors: Iterable[SelectorLike] | SelectorLike | None = None,
        selector_match: MatchBehavior = MatchBehavior.EXACT,
        federates_with: Iterable[TrustDomain | str] | None = None,
        federates_with_match: MatchBehavior = MatchBehavior.EXACT,
        hint: str | None = None,
        downstream: bool | None = None,
    ) -> Any:  # an instance of cls: the Filter message of a Count/List request
        f = cls()
        if spiffe_id is not None:
            f.by_spiffe_id.CopyFrom(cv.id_to_proto(spiffe_id_arg(spiffe_id, "spiffe_id filter")))
        if parent_id is not None:
            f.by_parent_id.CopyFrom(cv.id_to_proto(spiffe_id_arg(parent_id, "parent_id filter")))
        if selectors is not None:
            sels = selectors_arg(selectors, "selectors filter")
            f.by_selectors.CopyFrom(
                selector_pb2.SelectorMatch(
                    selectors=cv.selectors_to_proto(sels), match=_selector_match(selector_match)
                )
            )
        if federates_with is not None:
            if isinstance(federates_with, str):
                federates_with = (federates_with,)
            tds = [trust_domain_arg(td, "federates_with filter") for td in federates_with]
            if not tds:
                raise SpireValidationError("federates_with filter needs at least one trust domain")
            f.by_federates_with.CopyFrom(
                federateswith_pb2.FederatesWithMatch(
                    trust_domains=[str(td.id()) for td in tds],
                    match=_federates_with_match(federates_with_match),
                )
            )
        if hint is not None:
            f.by_hint.value = hint
        if downstream is not None:
            f.by_downstream.value = downstream
        return f

    def count_entries(self, **filters: object) -> Call[int]:
        flt = self._entry_filter(entry_api_pb2.CountEntriesRequest.Filter, **filters)  # type: ignore[arg-type]
        req = entry_api_pb2.CountEntriesRequest(filter=flt)
        return Call("entry", "CountEntries", req, lambda r: r.count, idempotent=True)

    def list_entries(
        self, page_size: int | None = None, id_prefix: str = "", **filters: object
    ) -> Paged[Entry]:
        flt = self._entry_filter(entry_api_pb2.ListEntriesRequest.Filter, **filters)  # type: ignore[arg-type]
        size = self.page_size if page_size is None else _page_size(page_size)
        if not isinstance(id_prefix, str):
            raise SpireValidationError(f"id_prefix must be a str, got {id_prefix!r}")

        def entries(r: entry_api_pb2.ListEntriesResponse) -> tuple[Sequence[Any], str]:
            if id_prefix:  # dropped before they are converted
                return [e for e in r.entries if e.id.startswith(id_prefix)], r.next_page_token
            return r.entries, r.next_page_token

        def page(token: str) -> Call[tuple[Sequence[Any], str]]:
            req = entry_api_pb2.ListEntriesRequest(filter=flt, page_size=size, page_token=token)
            return Call("entry", "ListEntries", req, entries, idempotent=True)

        return Paged(page, cv.entries_from_proto)

    def get_entry(self, entry_id: str) -> Call[Entry]:
        if not entry_id:
            raise SpireValidationError("get_entry needs a non-empty entry ID")
        req = entry_api_pb2.GetEntryRequest(id=entry_id)
        return Call("entry", "GetEntry", req, cv.entry_from_proto, idempotent=True)

    def create_entries(self, entries: Sequence[Entry]) -> Batch[Entry]:
        non_empty(entries, "create_entries")
        msgs = [cv.entry_to_proto(_entry(e, i)) for i, e in enumerate(entries)]

        def parse(resp: entry_api_pb2.BatchCreateEntryResponse) -> list[Outcome[Entry]]:
            return [
                status_outcome(
                    r.status,
                    cv.entry_from_proto(r.entry) if r.HasField("entry") else None,
                    "entry.BatchCreateEntry",
                )
                for r in resp.results
            ]

        # Not idempotent: a retried create after a lost response reports AlreadyExists
        # instead of success, so creates are sent once (wait-for-ready, no re-send).
        return Batch(
            [
                Call(
                    "entry",
                    "BatchCreateEntry",
                    entry_api_pb2.BatchCreateEntryRequest(entries=chunk),
                    parse,
                    idempotent=False,
                )
                for chunk in chunked(msgs, MAX_BATCH_ITEMS, MAX_BATCH_BYTES)
            ]
        )

    def update_entries(
        self, entries: Sequence[Entry], fields: Iterable[EntryField | str] | None
    ) -> Batch[Entry]:
        non_empty(entries, "update_entries")
        mask = cv.entry_mask(fields_arg(fields))
        for i, e in enumerate(entries):
            if not _entry(e, i).id:
                raise SpireValidationError(f"update_entries item {i} has no entry ID")
        msgs = [cv.entry_to_proto(e) for e in entries]

        def parse(resp: entry_api_pb2.BatchUpdateEntryResponse) -> list[Outcome[Entry]]:
            return [
                status_outcome(
                    r.status,
                    cv.entry_from_proto(r.entry) if r.HasField("entry") else None,
                    "entry.BatchUpdateEntry",
                )
                for r in resp.results
            ]

        # Idempotent: writing the same fields twice leaves the same entry (the revision
        # number may grow, which is not a change of what the entry says).
        return Batch(
            [
                Call(
                    "entry",
                    "BatchUpdateEntry",
                    entry_api_pb2.BatchUpdateEntryRequest(entries=chunk, input_mask=mask),
                    parse,
                    idempotent=True,
                )
                for chunk in chunked(msgs, MAX_BATCH_ITEMS, MAX_BATCH_BYTES)
            ]
        )

    def delete_entries(self, entry_ids: Sequence[str]) -> Batch[str]:
        non_empty(entry_ids, "delete_entries")
        for i, eid in enumerate(entry_ids):
            if not isinstance(eid, str) or not eid:
                raise SpireValidationError(f"delete_entries item {i} is not an entry ID: {eid!r}")

        def parse(resp: entry_api_pb2.BatchDeleteEntryResponse) -> list[Outcome[str]]:
            return [status_outcome(r.status, r.id, "entry.BatchDeleteEntry") for r in resp.results]

        # Delete is sent once: a retry after a lost response would turn success into
        # NotFound for the caller. (The end state is the same, but the report would lie.)
        ids = list(entry_ids)
        size = MAX_BATCH_ITEMS
        return Batch(
            [
                Call(
                    "entry",
                    "BatchDeleteEntry",
                    entry_api_pb2.BatchDeleteEntryRequest(ids=ids[i : i + size]),
                    parse,
                    idempotent=False,
                )
                for i in range(0, len(ids), size)
            ]
        )

    def get_authorized_entries(self) -> Call[list[Entry]]:
        return Call(
            "entry",
            "GetAuthorizedEntries",
            entry_api_pb2.GetAuthorizedEntriesRequest(),
            lambda r: [cv.entry_from_proto(e) for e in r.entries],
            idempotent=True,
        )

    # ---- agents ----------------------------------------------------------------------

    def _agent_filter(
        self,
        cls: type,
        attestation_type: str | None = None,
        selectors: Iterable[SelectorLike] | SelectorLike | None = None,
        selector_match: MatchBehavior = MatchBehavior.EXACT,
        banned: bool | None = None,
        can_reattest: bool | None = None,
        expires_before: datetime | None = None,
    ) -> Any:  # an instance of cls: the Filter message of a Count/List request
        f = cls()
        if attestation_type:
            f.by_attestation_type = attestation_type
        if selectors is not None:
            sels = selectors_arg(selectors, "selectors filter")
            f.by_selector_match.CopyFrom(
                selector_pb2.SelectorMatch(
                    selectors=cv.selectors_to_proto(sels), match=_selector_match(selector_match)
                )
            )
        if banned is not None:
            f.by_banned.CopyFrom(_bool_value(banned))
        if can_reattest is not None:
            f.by_can_reattest.CopyFrom(_bool_value(can_reattest))
        if expires_before is not None:
            f.by_expires_before = _go_time(expires_before)
        return f

    def count_agents(self, **filters: object) -> Call[int]:
        flt = self._agent_filter(agent_pb2.CountAgentsRequest.Filter, **filters)  # type: ignore[arg-type]
        req = agent_pb2.CountAgentsRequest(filter=flt)
        return Call("agent", "CountAgents", req, lambda r: r.count, idempotent=True)

    def list_agents(self, page_size: int | None = None, **filters: object) -> Paged[AttestedAgent]:
        flt = self._agent_filter(agent_pb2.ListAgentsRequest.Filter, **filters)  # type: ignore[arg-type]
        size = self.page_size if page_size is None else _page_size(page_size)

        def page(token: str) -> Call[tuple[Sequence[Any], str]]:
            req = agent_pb2.ListAgentsRequest(filter=flt, page_size=size, page_token=token)
            return Call(
                "agent", "ListAgents", req, lambda r: (r.agents, r.next_page_token), idempotent=True
            )

        return Paged(page, lambda msgs: [cv.agent_from_proto(a) for a in msgs])

    def get_agent(self, agent_id: SpiffeId | str) -> Call[AttestedAgent]:
        req = agent_pb2.GetAgentRequest(id=cv.id_to_proto(spiffe_id_arg(agent_id, "agent_id")))
        return Call("agent", "GetAgent", req, cv.agent_from_proto, idempotent=True)

    def ban_agent(self, agent_id: SpiffeId | str) -> Call[None]:
        # Banning twice leaves the agent banned: safe to retry.
        req = agent_pb2.BanAgentRequest(id=cv.id_to_proto(spiffe_id_arg(agent_id, "agent_id")))
        return Call("agent", "BanAgent", req, _none, idempotent=True)

    def delete_agent(self, agent_id: SpiffeId | str) -> Call[None]:
        # Not retried: a second attempt after a lost reply would raise NotFound.
        req = agent_pb2.DeleteAgentRequest(id=cv.id_to_proto(spiffe_id_arg(agent_id, "agent_id")))
        return Call("agent", "DeleteAgent", req, _none, idempotent=False)

    def create_join_token(self, ttl: int, agent_id: SpiffeId | str | None) -> Call[JoinToken]:
        # SPIRE refuses ttl < 1 ("ttl is required"); say so before the RPC.
        ttl_arg(ttl, "join token ttl")
        if ttl < 1:
            raise SpireValidationError("join token ttl must be at least 1 second")
        req = agent_pb2.CreateJoinTokenRequest(ttl=ttl)
        if agent_id is not None:
            req.agent_id.CopyFrom(cv.id_to_proto(spiffe_id_arg(agent_id, "agent_id")))
        # Every call mints a new token: never re-sent.
        return Call("agent", "CreateJoinToken", req, cv.join_token_from_proto, idempotent=False)

    # ---- bundles ---------------------------------------------------------------------

    def get_bundle(self) -> Call[Bundle]:
        req = bundle_api_pb2.GetBundleRequest()
        return Call("bundle", "GetBundle", req, cv.bundle_from_proto, idempotent=True)

    def count_bundles(self) -> Call[int]:
        req = bundle_api_pb2.CountBundlesRequest()
        return Call("bundle", "CountBundles", req, lambda r: r.count, idempotent=True)

    def append_bundle(
        self,
        x509_authorities: Iterable[X509Authority | x509.Certificate],
        jwt_authorities: Iterable[JwtAuthority],
    ) -> Call[Bundle]:
        x509s = [a if isinstance(a, X509Authority) else X509Authority(a) for a in x509_authorities]
        jwts = list(jwt_authorities)
        if not x509s and not jwts:
            raise SpireValidationError("append_bundle needs at least one X.509 or JWT authority")
        req = bundle_api_pb2.AppendBundleRequest(
            x509_authorities=[cv.x509_authority_to_proto(a) for a in x509s],
            jwt_authorities=[cv.jwt_authority_to_proto(a) for a in jwts],
        )
        # Appending an authority that is already there changes nothing: retry is safe.
        return Call("bundle", "AppendBundle", req, cv.bundle_from_proto, idempotent=True)

    def list_federated_bundles(self, page_size: int | None = None) -> Paged[Bundle]:
        size = self.page_size if page_size is None else _page_size(page_size)

        def page(token: str) -> Call[tuple[Sequence[Any], str]]:
            req = bundle_api_pb2.ListFederatedBundlesRequest(page_size=size, page_token=token)
            return Call(
                "bundle",
                "ListFederatedBundles",
                req,
                lambda r: (r.bundles, r.next_page_token),
                idempotent=True,
            )

        return Paged(page, lambda msgs: [cv.bundle_from_proto(b) for b in msgs])

    def get_federated_bundle(self, trust_domain: TrustDomain | str) -> Call[Bundle]:
        td = trust_domain_arg(trust_domain, "trust_domain")
        req = bundle_api_pb2.GetFederatedBundleRequest(trust_domain=td.name)
        return Call("bundle", "GetFederatedBundle", req, cv.bundle_from_proto, idempotent=True)

    def _bundle_batch(
        self, method: str, bundles: Sequence[Bundle], idempotent: bool, **extra: object
    ) -> Batch[Bundle]:
        non_empty(bundles, method)
        for i, b in enumerate(bundles):
            if not isinstance(b, Bundle):
                raise SpireValidationError(f"{method} item {i} is not a Bundle: {b!r}")
        msgs = [cv.bundle_to_proto(b) for b in bundles]
        req_cls = getattr(bundle_api_pb2, f"{method}Request")

        def parse(resp: object) -> list[Outcome[Bundle]]:
            return [
                status_outcome(
                    r.status,
                    cv.bundle_from_proto(r.bundle) if r.HasField("bundle") else None,
                    f"bundle.{method}",
                )
                for r in resp.results  # type: ignore[attr-defined]
            ]

        return Batch(
            [
                Call("bundle", method, req_cls(bundle=chunk, **extra), parse, idempotent)
                for chunk in chunked(msgs, MAX_BATCH_ITEMS, MAX_BATCH_BYTES)
            ]
        )

    def create_federated_bundles(self, bundles: Sequence[Bundle]) -> Batch[Bundle]:
        return self._bundle_batch("BatchCreateFederatedBundle", bundles, idempotent=False)

    def update_federated_bundles(self, bundles: Sequence[Bundle]) -> Batch[Bundle]:
        return self._bundle_batch("BatchUpdateFederatedBundle", bundles, idempotent=True)

    def set_federated_bundles(self, bundles: Sequence[Bundle]) -> Batch[Bundle]:
        # "Set" is create-or-replace: the one bundle write that is naturally idempotent.
        return self._bundle_batch("BatchSetFederatedBundle", bundles, idempotent=True)

    def delete_federated_bundles(
        self, trust_domains: Sequence[TrustDomain | str], mode: str
    ) -> Batch[TrustDomain]:
        non_empty(trust_domains, "delete_federated_bundles")
        if mode not in _DELETE_MODES:
            raise SpireValidationError(
                f"delete mode must be one of {sorted(_DELETE_MODES)}, got {mode!r}"
            )
        names = [trust_domain_arg(td, "trust_domain").name for td in trust_domains]

        def parse(
            resp: bundle_api_pb2.BatchDeleteFederatedBundleResponse,
        ) -> list[Outcome[TrustDomain]]:
            return [
                status_outcome(
                    r.status,
                    TrustDomain(r.trust_domain) if r.trust_domain else None,
                    "bundle.BatchDeleteFederatedBundle",
                )
                for r in resp.results
            ]

        return Batch(
            [
                Call(
                    "bundle",
                    "BatchDeleteFederatedBundle",
                    bundle_api_pb2.BatchDeleteFederatedBundleRequest(
                        trust_domains=names[i : i + MAX_BATCH_ITEMS], mode=_DELETE_MODES[mode]
                    ),
                    parse,
                    idempotent=False,
                )
                for i in range(0, len(names), MAX_BATCH_ITEMS)
            ]
        )

    # ---- federation relationships ----------------------------------------------------

    def list_federation_relationships(
        self, page_size: int | None = None
    ) -> Paged[FederationRelationship]:
        size = self.page_size if page_size is None else _page_size(page_size)

        def page(token: str) -> Call[tuple[Sequence[Any], str]]:
            req = trustdomain_pb2.ListFederationRelationshipsRequest(
                page_size=size, page_token=token
            )
            return Call(
                "trustdomain",
                "ListFederationRelationships",
                req,
                lambda r: (r.federation_relationships, r.next_page_token),
                idempotent=True,
            )

        return Paged(page, lambda msgs: [cv.relationship_from_proto(m) for m in msgs])

    def get_federation_relationship(
        self, trust_domain: TrustDomain | str
    ) -> Call[FederationRelationship]:
        td = trust_domain_arg(trust_domain, "trust_domain")
        req = trustdomain_pb2.GetFederationRelationshipRequest(trust_domain=td.name)
        return Call(
            "trustdomain",
            "GetFederationRelationship",
            req,
            cv.relationship_from_proto,
            idempotent=True,
        )

    def _relationship_batch(
        self,
        method: str,
        rels: Sequence[FederationRelationship],
        idempotent: bool,
        **extra: object,
    ) -> Batch[FederationRelationship]:
        non_empty(rels, method)
        for i, rel in enumerate(rels):
            if not isinstance(rel, FederationRelationship):
                raise SpireValidationError(f"{method} item {i} is not a FederationRelationship")
        msgs = [cv.relationship_to_proto(r) for r in rels]
        req_cls = getattr(trustdomain_pb2, f"{method}Request")

        def parse(resp: object) -> list[Outcome[FederationRelationship]]:
            return [
                status_outcome(
                    r.status,
                    cv.relationship_from_proto(r.federation_relationship)
                    if r.HasField("federation_relationship")
                    else None,
                    f"trustdomain.{method}",
                )
                for r in resp.results  # type: ignore[attr-defined]
            ]

        return Batch(
            [
                Call(
                    "trustdomain",
                    method,
                    req_cls(federation_relationships=chunk, **extra),
                    parse,
                    idempotent,
                )
                for chunk in chunked(msgs, MAX_BATCH_ITEMS, MAX_BATCH_BYTES)
            ]
        )

    def create_federation_relationships(
        self, rels: Sequence[FederationRelationship]
    ) -> Batch[FederationRelationship]:
        return self._relationship_batch("BatchCreateFederationRelationship", rels, False)

    def update_federation_relationships(
        self, rels: Sequence[FederationRelationship], fields: Iterable[str] | None
    ) -> Batch[FederationRelationship]:
        extra: dict[str, object] = {}
        if fields is not None:
            allowed = {"bundle_endpoint_url", "bundle_endpoint_profile", "trust_domain_bundle"}
            chosen = set(fields)
            if not chosen or not chosen <= allowed:
                raise SpireValidationError(
                    f"federation relationship update fields must be a non-empty subset of "
                    f"{sorted(allowed)}, got {sorted(chosen)}"
                )
            extra["input_mask"] = federationrelationship_pb2.FederationRelationshipMask(
                **{f: True for f in chosen}
            )
        return self._relationship_batch("BatchUpdateFederationRelationship", rels, True, **extra)

    def delete_federation_relationships(
        self, trust_domains: Sequence[TrustDomain | str]
    ) -> Batch[TrustDomain]:
        non_empty(trust_domains, "delete_federation_relationships")
        names = [trust_domain_arg(td, "trust_domain").name for td in trust_domains]

        def parse(
            resp: trustdomain_pb2.BatchDeleteFederationRelationshipResponse,
        ) -> list[Outcome[TrustDomain]]:
            return [
                status_outcome(
                    r.status,
                    TrustDomain(r.trust_domain) if r.trust_domain else None,
                    "trustdomain.BatchDeleteFederationRelationship",
                )
                for r in resp.results
            ]

        return Batch(
            [
                Call(
                    "trustdomain",
                    "BatchDeleteFederationRelationship",
                    trustdomain_pb2.BatchDeleteFederationRelationshipRequest(
                        trust_domains=names[i : i + MAX_BATCH_ITEMS]
                    ),
                    parse,
                    idempotent=False,
                )
                for i in range(0, len(names), MAX_BATCH_ITEMS)
            ]
        )

    def refresh_bundle(self, trust_domain: TrustDomain | str) -> Call[None]:
        td = trust_domain_arg(trust_domain, "trust_domain")
        req = trustdomain_pb2.RefreshBundleRequest(trust_domain=td.name)
        return Call("trustdomain", "RefreshBundle", req, _none, idempotent=True)

    # ---- SVIDs -----------------------------------------------------------------------

    def mint_x509_svid(
        self,
        spiffe_id: SpiffeId | str | None,
        *,
        csr: x509.CertificateSigningRequest | bytes | None,
        dns_names: Sequence[str],
        ttl: int,
    ) -> Call[MintedX509Svid]:
        ttl_arg(ttl, "ttl")
        key: PrivateKeyTypes | None = None
        if csr is None:
            if spiffe_id is None:
                raise SpireValidationError("mint_x509_svid needs a spiffe_id or a csr")
            sid = spiffe_id_arg(spiffe_id, "spiffe_id")
            key = ec.generate_private_key(ec.SECP256R1())
            csr_der = make_csr(key, sid, dns_names)
        else:
            if spiffe_id is not None or dns_names:
                raise SpireValidationError(
                    "with your own csr, put the SPIFFE ID and DNS names in the CSR, "
                    "not in spiffe_id/dns_names"
                )
            if isinstance(csr, x509.CertificateSigningRequest):
                csr_der = csr.public_bytes(serialization.Encoding.DER)
            else:
                csr_der = bytes(csr)
        req = svid_pb2.MintX509SVIDRequest(csr=csr_der, ttl=ttl)

        def parse(resp: svid_pb2.MintX509SVIDResponse) -> MintedX509Svid:
            return MintedX509Svid(
                spiffe_id=cv.id_from_proto(resp.svid.id),
                cert_chain=cv.x509_chain_from_proto(resp.svid),
                expires_at=resp.svid.expires_at,
                private_key=key,
                hint=resp.svid.hint,
            )

        # Minting is not retried: a retry would sign a second certificate.
        return Call("svid", "MintX509SVID", req, parse, idempotent=False)

    def mint_jwt_svid(
        self, spiffe_id: SpiffeId | str, audience: Sequence[str], ttl: int
    ) -> Call[MintedJwtSvid]:
        sid = spiffe_id_arg(spiffe_id, "spiffe_id")
        ttl_arg(ttl, "ttl")
        if isinstance(audience, str):
            audience = [audience]
        if not audience or any(not a for a in audience):
            raise SpireValidationError("mint_jwt_svid needs at least one non-empty audience")
        req = svid_pb2.MintJWTSVIDRequest(id=cv.id_to_proto(sid), audience=list(audience), ttl=ttl)
        return Call(
            "svid",
            "MintJWTSVID",
            req,
            lambda r: cv.jwt_svid_from_proto(r.svid),
            idempotent=False,
        )

    # ---- local authorities (CA rotation by hand) ---------------------------------------

    def get_authority_state(self, kind: AuthorityKind) -> Call[AuthorityStates]:
        method = f"Get{_authority_kind(kind)}AuthorityState"
        req = getattr(la_pb2, f"{method}Request")()
        return Call("localauthority", method, req, cv.authority_states_from_proto, True)

    def prepare_authority(self, kind: AuthorityKind) -> Call[AuthorityState]:
        # Sent once: a second prepare replaces the prepared authority with another one.
        method = f"Prepare{_authority_kind(kind)}Authority"
        req = getattr(la_pb2, f"{method}Request")()
        parse = _answered_authority("prepared_authority")
        return Call("localauthority", method, req, parse, idempotent=False)

    def _authority_change(
        self, verb: str, kind: AuthorityKind, authority_id: str, answer: str
    ) -> Call[AuthorityState]:
        # Activate, taint and revoke are sent once: repeated, SPIRE refuses the second
        # (the authority is no longer prepared / already tainted / gone), which would
        # report a failure for a change that happened.
        method = f"{verb}{_authority_kind(kind)}Authority"
        aid = _authority_id(authority_id, "authority_id")
        req = getattr(la_pb2, f"{method}Request")(authority_id=aid)
        return Call("localauthority", method, req, _answered_authority(answer), False)

    def activate_authority(self, kind: AuthorityKind, authority_id: str) -> Call[AuthorityState]:
        return self._authority_change("Activate", kind, authority_id, "activated_authority")

    def taint_authority(self, kind: AuthorityKind, authority_id: str) -> Call[AuthorityState]:
        return self._authority_change("Taint", kind, authority_id, "tainted_authority")

    def revoke_authority(self, kind: AuthorityKind, authority_id: str) -> Call[AuthorityState]:
        return self._authority_change("Revoke", kind, authority_id, "revoked_authority")

    def _upstream_change(self, verb: str, subject_key_id: str) -> Call[str]:
        skid = _authority_id(subject_key_id, "subject_key_id").lower()
        method = f"{verb}X509UpstreamAuthority"
        req = getattr(la_pb2, f"{method}Request")(subject_key_id=skid)
        return Call("localauthority", method, req, _upstream_subject_key_id, idempotent=False)

    def taint_upstream_authority(self, subject_key_id: str) -> Call[str]:
        return self._upstream_change("Taint", subject_key_id)

    def revoke_upstream_authority(self, subject_key_id: str) -> Call[str]:
        return self._upstream_change("Revoke", subject_key_id)

    # ---- debug / logger --------------------------------------------------------------

    def server_info(self) -> Call[ServerInfo]:
        req = debug_pb2.GetInfoRequest()
        return Call("debug", "GetInfo", req, cv.server_info_from_proto, idempotent=True)

    def get_log_level(self) -> Call[LoggerLevels]:
        req = logger_api_pb2.GetLoggerRequest()
        return Call("logger", "GetLogger", req, cv.logger_from_proto, idempotent=True)

    def set_log_level(self, level: LogLevel | str) -> Call[LoggerLevels]:
        if isinstance(level, str):
            try:
                level = LogLevel[level.upper()]
            except KeyError as err:
                names = ", ".join(lv.name.lower() for lv in LogLevel if lv)
                raise SpireValidationError(f"unknown log level {level!r}; use {names}") from err
        if level == LogLevel.UNSPECIFIED:
            raise SpireValidationError("set_log_level needs a real level, not UNSPECIFIED")
        # Our LogLevel mirrors spire.api.types.LogLevel value for value.
        new_level = cast("types_logger_pb2.LogLevel", int(level))
        req = logger_api_pb2.SetLogLevelRequest(new_level=new_level)
        return Call("logger", "SetLogLevel", req, cv.logger_from_proto, idempotent=True)

    def reset_log_level(self) -> Call[LoggerLevels]:
        req = logger_api_pb2.ResetLogLevelRequest()
        return Call("logger", "ResetLogLevel", req, cv.logger_from_proto, idempotent=True)


def _entry(value: object, index: int) -> Entry:
    if not isinstance(value, Entry):
        raise SpireValidationError(f"batch item {index} is not an Entry: {value!r}")
    return value


def make_csr(key: PrivateKeyTypes, spiffe_id: SpiffeId, dns_names: Sequence[str]) -> bytes:
    """A CSR carrying the SPIFFE ID as its only URI SAN, as MintX509SVID requires."""
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(str(spiffe_id))]
    sans += [x509.DNSName(name) for name in dns_names]
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])] if dns_names else []
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.DER)


__all__ = ["DEFAULT_PAGE_SIZE", "MAX_BATCH_BYTES", "MAX_BATCH_ITEMS", "ServerApi"]
