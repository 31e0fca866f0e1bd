"""Typed values the SPIRE Server API client takes and returns.

Values are frozen dataclasses so they can be compared, hashed where it makes sense, and
diffed field by field (the entry reconciler compares desired against actual with
`Entry.diff`). Constructors coerce the convenient forms (strings for SPIFFE IDs, trust
domains and selectors; lists for tuples) and reject what SPIRE would reject, raising
`SpireValidationError` that names the field, so a bad value never reaches an RPC.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Generic, TypeVar, Union

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import (
    PrivateKeyTypes,
    PublicKeyTypes,
)

from spire_fabric.identity import (
    BundleDiff,
    JwtBundle,
    SpiffeId,
    SpiffeIdError,
    TrustDomain,
    X509Bundle,
    diff_bundles,
)
from spire_fabric.server._errors import SpireApiError, SpireValidationError

__all__ = [
    "AttestedAgent",
    "BatchItem",
    "BatchResult",
    "Bundle",
    "CertInfo",
    "Entry",
    "EntryField",
    "FederationRelationship",
    "HttpsSpiffeProfile",
    "HttpsWebProfile",
    "JoinToken",
    "JwtAuthority",
    "LogLevel",
    "LoggerLevels",
    "MatchBehavior",
    "MintedJwtSvid",
    "MintedX509Svid",
    "Selector",
    "SelectorLike",
    "ServerInfo",
    "X509Authority",
]

T = TypeVar("T")

# SPIRE's hint limit (pkg/server/api/entry.go: hintMaximumLength).
_HINT_MAX = 1024
# TTLs travel as int32 in the protos.
_INT32_MAX = 2**31 - 1


def spiffe_id_arg(value: SpiffeId | str, what: str) -> SpiffeId:
    """A SpiffeId from a SpiffeId or a string, or a validation error naming `what`."""
    if isinstance(value, SpiffeId):
        return value
    if not isinstance(value, str):
        raise SpireValidationError(f"{what} must be a SPIFFE ID, got {type(value).__name__}")
    try:
        return SpiffeId.parse(value)
    except SpiffeIdError as err:
        raise SpireValidationError(f"{what} is not a valid SPIFFE ID: {err}") from err


def trust_domain_arg(value: TrustDomain | SpiffeId | str, what: str) -> TrustDomain:
    """A TrustDomain from a name, a `spiffe://td` ID or a SpiffeId (its trust domain)."""
    if isinstance(value, TrustDomain):
        return value
    if isinstance(value, SpiffeId):
        return value.trust_domain
    if not isinstance(value, str):
        raise SpireValidationError(f"{what} must be a trust domain, got {type(value).__name__}")
    try:
        return TrustDomain.parse(value)
    except SpiffeIdError as err:
        raise SpireValidationError(f"{what} is not a valid trust domain: {err}") from err


def ttl_arg(value: int, what: str) -> int:
    """A TTL in seconds: 0 means "server default", negative is refused, int32 is the limit."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpireValidationError(f"{what} must be an int number of seconds, got {value!r}")
    if value < 0:
        raise SpireValidationError(f"{what} must be >= 0 seconds (0 = server default), got {value}")
    if value > _INT32_MAX:
        raise SpireValidationError(f"{what} must fit in int32 seconds, got {value}")
    return value


class MatchBehavior(enum.IntEnum):
    """How a selector or federates-with filter matches (spire.api.types.SelectorMatch)."""

    EXACT = 0
    SUBSET = 1
    SUPERSET = 2
    ANY = 3


@dataclass(frozen=True, order=True, slots=True)
class Selector:
    """A selector `type:value`; the value may itself contain colons (`unix:uid:1000`)."""

    type: str
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not isinstance(self.value, str):
            raise SpireValidationError(f"selector type and value must be str: {self!r}")
        if not self.type or ":" in self.type:
            raise SpireValidationError(
                f"selector type must be non-empty and contain no ':', got {self.type!r}"
            )
        if not self.value:
            raise SpireValidationError(f"selector {self.type!r} has an empty value")

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Split on the FIRST colon, as SPIRE's CLI does: `k8s:ns:default` -> (k8s, ns:default)."""
        if not isinstance(text, str):
            raise SpireValidationError(f"selector must be a 'type:value' string, got {text!r}")
        kind, sep, value = text.partition(":")
        if not sep:
            raise SpireValidationError(f"selector {text!r} is not of the form 'type:value'")
        return cls(kind, value)

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


SelectorLike = Union[Selector, str]  # noqa: UP007 - a runtime alias must work on 3.10


def selector_arg(value: SelectorLike) -> Selector:
    return value if isinstance(value, Selector) else Selector.parse(value)


def selectors_arg(values: Iterable[SelectorLike] | SelectorLike, what: str) -> tuple[Selector, ...]:
    if isinstance(values, (str, Selector)):
        values = (values,)
    result = tuple(selector_arg(v) for v in values)
    if not result:
        raise SpireValidationError(f"{what} needs at least one selector")
    return result


def _canonical_selectors(values: Iterable[SelectorLike] | SelectorLike) -> tuple[Selector, ...]:
    """An entry's selectors, typed and sorted; at least one."""
    if type(values) is tuple and values and all(type(v) is Selector for v in values):
        typed: tuple[Selector, ...] = values
    else:
        typed = selectors_arg(values, "Entry.selectors")
    return typed if len(typed) == 1 else tuple(sorted(typed))


class EntryField(str, enum.Enum):
    """Entry fields as SPIRE's EntryMask names them: the unit of update masks and diffs."""

    SPIFFE_ID = "spiffe_id"
    PARENT_ID = "parent_id"
    SELECTORS = "selectors"
    X509_SVID_TTL = "x509_svid_ttl"
    JWT_SVID_TTL = "jwt_svid_ttl"
    FEDERATES_WITH = "federates_with"
    ADMIN = "admin"
    DOWNSTREAM = "downstream"
    EXPIRES_AT = "expires_at"
    DNS_NAMES = "dns_names"
    STORE_SVID = "store_svid"
    HINT = "hint"


# Fields whose order SPIRE does not keep: the SQL datastore hands selectors, federated trust
# domains and DNS names back in its own order (checked against 1.13.3), so a reconciler that
# compared them as sequences would "update" entries forever.
_UNORDERED = frozenset({EntryField.SELECTORS, EntryField.FEDERATES_WITH, EntryField.DNS_NAMES})
# What Entry.diff walks, resolved once: reading an enum member's `.value` per field and entry
# was most of diffing 10k entries (a no-change `entries apply`).
_DIFFED = tuple((f, f.value, f in _UNORDERED) for f in EntryField)


@dataclass(frozen=True)
class Entry:
    """A registration entry, with every field SPIRE stores.

    `id`, `revision_number` and `created_at` are assigned by the server (leave them empty
    when creating, unless you want to choose the entry ID). TTLs are seconds, 0 meaning the
    server default; `expires_at` is a Unix time, 0 meaning never.
    """

    spiffe_id: SpiffeId
    parent_id: SpiffeId
    selectors: tuple[Selector, ...]
    id: str = ""
    x509_svid_ttl: int = 0
    jwt_svid_ttl: int = 0
    federates_with: tuple[TrustDomain, ...] = ()
    admin: bool = False
    downstream: bool = False
    expires_at: int = 0
    dns_names: tuple[str, ...] = ()
    revision_number: int = 0
    store_svid: bool = False
    hint: str = ""
    created_at: int = 0

    def __post_init__(self) -> None:
        # Every check runs for every entry; values that already have their type (the
        # common case: entries built from a topology or listed from SPIRE, 50k of them in
        # a scale plan) skip the coercion, not the check.
        put = object.__setattr__
        if type(self.spiffe_id) is not SpiffeId:
            put(self, "spiffe_id", spiffe_id_arg(self.spiffe_id, "Entry.spiffe_id"))
        if type(self.parent_id) is not SpiffeId:
            put(self, "parent_id", spiffe_id_arg(self.parent_id, "Entry.parent_id"))
        # Canonical (sorted) order: SPIRE reads selectors and federated trust domains back
        # sorted, so sorting here makes a created entry equal to the same entry listed.
        put(self, "selectors", _canonical_selectors(self.selectors))
        if self.federates_with != ():
            put(
                self,
                "federates_with",
                tuple(
                    sorted(
                        trust_domain_arg(td, "Entry.federates_with") for td in self.federates_with
                    )
                ),
            )
        if type(self.dns_names) is not tuple:
            if isinstance(self.dns_names, str):
                raise SpireValidationError("Entry.dns_names must be a sequence of names, not a str")
            put(self, "dns_names", tuple(self.dns_names))
        # written out, not looped over: this runs for each of 50k entries in a scale plan
        x509_ttl, jwt_ttl = self.x509_svid_ttl, self.jwt_svid_ttl
        if type(x509_ttl) is not int or not 0 <= x509_ttl <= _INT32_MAX:
            ttl_arg(x509_ttl, "Entry.x509_svid_ttl")
        if type(jwt_ttl) is not int or not 0 <= jwt_ttl <= _INT32_MAX:
            ttl_arg(jwt_ttl, "Entry.jwt_svid_ttl")
        if self.expires_at < 0:
            raise SpireValidationError(f"Entry.expires_at must be >= 0, got {self.expires_at}")
        if len(self.hint) > _HINT_MAX:
            raise SpireValidationError(f"Entry.hint is longer than SPIRE's {_HINT_MAX} limit")
        if self.dns_names and not all(self.dns_names):
            raise SpireValidationError("Entry.dns_names contains an empty name")

    def diff(self, other: Entry) -> frozenset[EntryField]:
        """The settable fields in which `other` differs (order of list fields ignored).

        Server-assigned fields (id, revision, created_at) are not compared, so a desired
        entry can be diffed against the one SPIRE returned.
        """
        changed = []
        for which, name, unordered in _DIFFED:
            mine, theirs = getattr(self, name), getattr(other, name)
            # equal as sequences means equal as sets: only a difference pays for the sets
            if mine != theirs and (not unordered or frozenset(mine) != frozenset(theirs)):
                changed.append(which)
        return frozenset(changed)

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.entry_view(self)


@dataclass(frozen=True)
class AttestedAgent:
    """An attested agent as the server knows it (`x509svid_expires_at` is Unix seconds).

    SPIRE's `Agent` API object; named so it is not taken for topology's agent (a planned
    agent) or `spire_fabric.agent.AgentInfo` (an agent's view of itself). Formerly `Agent`.
    """

    id: SpiffeId
    attestation_type: str = ""
    x509svid_serial_number: str = ""
    x509svid_expires_at: int = 0
    selectors: tuple[Selector, ...] = ()
    banned: bool = False
    can_reattest: bool = False

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.agent_view(self)


@dataclass(frozen=True)
class X509Authority:
    """An X.509 root in a bundle; `tainted` marks a root being rotated out."""

    certificate: x509.Certificate
    tainted: bool = False


@dataclass(frozen=True)
class JwtAuthority:
    """A JWT signing key in a bundle; `expires_at` is Unix seconds (0 = no expiry)."""

    key_id: str
    public_key: PublicKeyTypes
    expires_at: int = 0
    tainted: bool = False

    def __post_init__(self) -> None:
        if not self.key_id:
            raise SpireValidationError("JwtAuthority.key_id must not be empty")


@dataclass(frozen=True)
class Bundle:
    """A trust domain's bundle as SPIRE stores it (roots, JWT keys, refresh hint, sequence).

    Plain certificates are accepted for `x509_authorities`; `to_x509_bundle` /
    `to_jwt_bundle` give the identity types that TLS and JWT verification take.
    """

    trust_domain: TrustDomain
    x509_authorities: tuple[X509Authority, ...] = ()
    jwt_authorities: tuple[JwtAuthority, ...] = ()
    refresh_hint: int = 0
    sequence_number: int = 0

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "trust_domain", trust_domain_arg(self.trust_domain, "Bundle.trust_domain"))
        put(
            self,
            "x509_authorities",
            tuple(
                a if isinstance(a, X509Authority) else X509Authority(a)
                for a in self.x509_authorities
            ),
        )
        put(self, "jwt_authorities", tuple(self.jwt_authorities))
        if self.refresh_hint < 0:
            raise SpireValidationError(f"Bundle.refresh_hint must be >= 0, got {self.refresh_hint}")

    @classmethod
    def from_identity(
        cls,
        x509_bundle: X509Bundle,
        jwt_bundle: JwtBundle | None = None,
        *,
        refresh_hint: int = 0,
    ) -> Bundle:
        """A Server API bundle from our bundle types (X.509 and/or JWT authorities)."""
        jwt = (
            ()
            if jwt_bundle is None
            else tuple(JwtAuthority(kid, key) for kid, key in jwt_bundle.jwt_authorities.items())
        )
        return cls(
            x509_bundle.trust_domain,
            tuple(X509Authority(c) for c in x509_bundle.x509_authorities),
            jwt,
            refresh_hint=refresh_hint,
        )

    def __repr__(self) -> str:
        return (
            f"Bundle({self.trust_domain.name!r}, {len(self.x509_authorities)} X.509 authorities, "
            f"{len(self.jwt_authorities)} JWT authorities, sequence {self.sequence_number})"
        )

    def to_x509_bundle(self) -> X509Bundle:
        """The X.509 authorities as an ``identity.X509Bundle``."""
        return X509Bundle(self.trust_domain, tuple(a.certificate for a in self.x509_authorities))

    def to_jwt_bundle(self) -> JwtBundle:
        """The JWT authorities as an ``identity.JwtBundle``."""
        return JwtBundle(self.trust_domain, {a.key_id: a.public_key for a in self.jwt_authorities})

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.server_bundle(self)

    def diff(self, other: object) -> BundleDiff:
        """What changed from this bundle to ``other`` (a later version): authorities added
        and removed, sequence number and refresh hint."""
        return diff_bundles(self, other)


@dataclass(frozen=True)
class HttpsWebProfile:
    """Bundle endpoint authenticated with Web PKI (the system roots)."""


@dataclass(frozen=True)
class HttpsSpiffeProfile:
    """Bundle endpoint authenticated as `endpoint_spiffe_id` with SPIFFE auth."""

    endpoint_spiffe_id: SpiffeId

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "endpoint_spiffe_id",
            spiffe_id_arg(self.endpoint_spiffe_id, "HttpsSpiffeProfile.endpoint_spiffe_id"),
        )


@dataclass(frozen=True)
class FederationRelationship:
    """How this server fetches a foreign trust domain's bundle."""

    trust_domain: TrustDomain
    bundle_endpoint_url: str
    profile: HttpsWebProfile | HttpsSpiffeProfile
    trust_domain_bundle: Bundle | None = None

    def __post_init__(self) -> None:
        td = trust_domain_arg(self.trust_domain, "FederationRelationship.trust_domain")
        object.__setattr__(self, "trust_domain", td)
        if not self.bundle_endpoint_url.startswith("https://"):
            raise SpireValidationError(
                "FederationRelationship.bundle_endpoint_url must be an https:// URL, "
                f"got {self.bundle_endpoint_url!r}"
            )
        if not isinstance(self.profile, (HttpsWebProfile, HttpsSpiffeProfile)):
            raise SpireValidationError(
                "FederationRelationship.profile must be HttpsWebProfile or HttpsSpiffeProfile"
            )
        bundle = self.trust_domain_bundle
        if bundle is not None and bundle.trust_domain != td:
            raise SpireValidationError(
                f"FederationRelationship.trust_domain_bundle is for {bundle.trust_domain}, not {td}"
            )

    def __repr__(self) -> str:
        kind = "https_spiffe" if isinstance(self.profile, HttpsSpiffeProfile) else "https_web"
        return (
            f"FederationRelationship({self.trust_domain.name!r}, {self.bundle_endpoint_url!r}, "
            f"{kind})"
        )

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.federation_relationship(self)


@dataclass(frozen=True)
class JoinToken:
    """A join token for one agent's attestation; ``expires_at`` in Unix seconds."""

    value: str
    expires_at: int


@dataclass(frozen=True)
class CertInfo:
    """One certificate of the server's own SVID chain, as the debug API reports it."""

    id: SpiffeId | None
    expires_at: int
    subject: str


@dataclass(frozen=True)
class ServerInfo:
    """What the server's debug API reports: uptime, counts and its own SVID chain."""

    uptime_seconds: int
    agents_count: int
    entries_count: int
    federated_bundles_count: int
    svid_chain: tuple[CertInfo, ...]


@dataclass(frozen=True)
class AuthorityState:
    """One of a server's own signing authorities, as the LocalAuthority API names it.

    ``authority_id`` is the subject key ID (X.509) or key ID (JWT) that `activate_*`
    takes; ``expires_at`` is Unix seconds.
    """

    authority_id: str
    expires_at: int
    upstream_authority_subject_key_id: str = ""


@dataclass(frozen=True)
class AuthorityStates:
    """A server's active, prepared and old authorities of one kind (X.509 or JWT).

    Rotation by hand is prepare (a new authority is published in the bundle but does not
    sign yet), wait until every peer has the new bundle, then activate (it signs).
    """

    active: AuthorityState | None
    prepared: AuthorityState | None = None
    old: AuthorityState | None = None


class LogLevel(enum.IntEnum):
    """SPIRE's log levels, value for value as ``spire.api.types.LogLevel``."""

    UNSPECIFIED = 0
    PANIC = 1
    FATAL = 2
    ERROR = 3
    WARN = 4
    INFO = 5
    DEBUG = 6
    TRACE = 7


@dataclass(frozen=True)
class LoggerLevels:
    """A logger's level now and the level it was launched with (what a reset returns to)."""

    current: LogLevel
    launch: LogLevel


@dataclass(frozen=True)
class MintedX509Svid:
    """A minted X.509-SVID; `private_key` is None when you supplied your own CSR.

    What `mint_x509_svid` returns, as SPIRE sends it; `spire_fabric.identity.X509Svid` is
    the validated SVID the rest of the package takes. Formerly `server.X509Svid`.
    """

    spiffe_id: SpiffeId
    cert_chain: tuple[x509.Certificate, ...]
    expires_at: int
    private_key: PrivateKeyTypes | None = field(default=None, repr=False)
    hint: str = ""

    @property
    def leaf(self) -> x509.Certificate:
        """The minted SVID's own certificate."""
        return self.cert_chain[0]


@dataclass(frozen=True)
class MintedJwtSvid:
    """A minted JWT-SVID, as SPIRE sends it (`expires_at`, `issued_at`: Unix seconds).

    `spire_fabric.identity.JwtSvid` is the parsed, validated token. Formerly
    `server.JwtSvid`.
    """

    token: str = field(repr=False)
    spiffe_id: SpiffeId
    expires_at: int
    issued_at: int
    hint: str = ""


@dataclass(frozen=True)
class BatchItem(Generic[T]):
    """One item of a batch call, at `index` in the caller's input.

    `value` is what the server returned for the item; on AlreadyExists (entry create)
    SPIRE also returns the existing entry, so `value` and `error` can both be set.
    """

    index: int
    value: T | None
    error: SpireApiError | None = None

    @property
    def ok(self) -> bool:
        """Whether SPIRE accepted this item."""
        return self.error is None


@dataclass(frozen=True)
class BatchResult(Generic[T]):
    """Per-item outcome of a batch call, in input order; one bad item never fails the rest."""

    items: tuple[BatchItem[T], ...]

    def __iter__(self) -> Iterator[BatchItem[T]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> BatchItem[T]:
        return self.items[index]

    @property
    def ok(self) -> bool:
        """Whether SPIRE accepted every item."""
        return all(item.ok for item in self.items)

    @property
    def succeeded(self) -> list[T]:
        """The results of the accepted items, in request order."""
        return [item.value for item in self.items if item.ok and item.value is not None]

    @property
    def failed(self) -> list[BatchItem[T]]:
        """The refused items, each with its index and error."""
        return [item for item in self.items if not item.ok]

    def raise_for_errors(self) -> BatchResult[T]:
        """Raise the first item's error (its message says which item); else return self."""
        for item in self.items:
            if item.error is not None:
                raise item.error
        return self


def entry_field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Entry))


def fields_arg(values: Iterable[EntryField | str] | None) -> frozenset[EntryField] | None:
    """An update mask from field names; None means "every field" (SPIRE's nil mask)."""
    if values is None:
        return None
    result = set()
    for v in values:
        try:
            result.add(EntryField(v))
        except ValueError as err:
            valid = ", ".join(f.value for f in EntryField)
            raise SpireValidationError(
                f"{v!r} is not an updatable entry field; choose from: {valid}"
            ) from err
    if not result:
        raise SpireValidationError("an update mask needs at least one field")
    return frozenset(result)


def non_empty(items: Sequence[T], what: str) -> Sequence[T]:
    if isinstance(items, (str, bytes)):
        raise SpireValidationError(f"{what} takes a sequence, not a single {type(items).__name__}")
    if len(items) == 0:
        raise SpireValidationError(f"{what} needs at least one item; got an empty batch")
    return items


class EntryList(tuple[Entry, ...]):
    """Entries as a table in a notebook: ``EntryList(client.list_entries())``.

    A plain tuple otherwise; it exists because a list cannot carry ``_repr_html_``.
    """

    def __repr__(self) -> str:
        return f"EntryList({len(self)} entries)"

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.entries(self)


class AgentList(tuple[AttestedAgent, ...]):
    """Attested agents as a table in a notebook: ``AgentList(client.list_agents())``."""

    def __repr__(self) -> str:
        return f"AgentList({len(self)} agents)"

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.agents(self)
