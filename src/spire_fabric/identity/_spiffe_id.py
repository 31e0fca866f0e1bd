"""Strict SPIFFE ID and trust domain values.

Parsing follows https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md and
go-spiffe's ``spiffeid`` package, not py-spiffe: py-spiffe lowercases an uppercase trust
domain instead of refusing it, so two peers could disagree on whether an ID is valid.
Valid input takes a single precompiled-regex fast path (IDs are parsed on every JWT-SVID
validation); only invalid input pays for the step-by-step diagnosis that names the rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import SpiffeIdError, SpiffeIdRule, TrustDomainError

if TYPE_CHECKING:
    import spiffe

__all__ = ["SpiffeId", "TrustDomain"]

_SCHEME = "spiffe://"
_MAX_ID_BYTES = 2048
_MAX_TRUST_DOMAIN_BYTES = 255

_TRUST_DOMAIN_RE = re.compile(r"[a-z0-9._-]+")
_PATH_RE = re.compile(r"(?:/[a-zA-Z0-9._-]+)*")
_SEGMENT_RE = re.compile(r"[a-zA-Z0-9._-]+")
_ID_RE = re.compile(r"spiffe://([a-z0-9._-]+)((?:/[a-zA-Z0-9._-]+)*)")

_TRUST_DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
_PATH_CHARS = _TRUST_DOMAIN_CHARS | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")

# Characters that are legal in a generic URI but forbidden in a SPIFFE ID; naming the URI
# component they introduce tells the user what to remove.
_URI_PART_RULES = {
    ":": SpiffeIdRule.PORT,
    "@": SpiffeIdRule.USERINFO,
    "?": SpiffeIdRule.QUERY,
    "#": SpiffeIdRule.FRAGMENT,
    "%": SpiffeIdRule.PERCENT_ENCODED,
}


def _byte_length(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass"))


def _has_dot_segment(path: str) -> bool:
    return "/." in path and any(seg in (".", "..") for seg in path.split("/"))


def _trust_domain_problem(name: str) -> SpiffeIdRule | None:
    if not name:
        return SpiffeIdRule.MISSING_TRUST_DOMAIN
    for c in name:
        if c not in _TRUST_DOMAIN_CHARS:
            return _URI_PART_RULES.get(c, SpiffeIdRule.BAD_TRUST_DOMAIN_CHAR)
    if _byte_length(name) > _MAX_TRUST_DOMAIN_BYTES:
        return SpiffeIdRule.TRUST_DOMAIN_TOO_LONG
    return None


def _path_problem(path: str) -> SpiffeIdRule | None:
    """Mirror of go-spiffe ``ValidatePath``: first broken rule, scanning left to right."""
    if not path:
        return None
    if path[0] != "/":
        return SpiffeIdRule.NO_LEADING_SLASH
    start = 0
    for i, c in enumerate(path):
        if c == "/":
            segment = path[start:i]
            if segment == "/":
                return SpiffeIdRule.EMPTY_SEGMENT
            if segment in ("/.", "/.."):
                return SpiffeIdRule.DOT_SEGMENT
            start = i
        elif c not in _PATH_CHARS:
            return _URI_PART_RULES.get(c, SpiffeIdRule.BAD_PATH_SEGMENT_CHAR)
    last = path[start:]
    if last == "/":
        return SpiffeIdRule.TRAILING_SLASH
    if last in ("/.", "/.."):
        return SpiffeIdRule.DOT_SEGMENT
    return None


def _segment_problem(segment: str) -> SpiffeIdRule | None:
    if segment == "":
        return SpiffeIdRule.EMPTY_SEGMENT
    if segment in (".", ".."):
        return SpiffeIdRule.DOT_SEGMENT
    for c in segment:
        if c not in _PATH_CHARS:
            return _URI_PART_RULES.get(c, SpiffeIdRule.BAD_PATH_SEGMENT_CHAR)
    return None


def _id_problem(s: str) -> SpiffeIdRule:
    """Name the first rule ``s`` breaks; only called once the fast path has refused it."""
    if not s:
        return SpiffeIdRule.EMPTY
    if _byte_length(s) > _MAX_ID_BYTES:
        return SpiffeIdRule.TOO_LONG
    if not s.startswith(_SCHEME):
        return SpiffeIdRule.WRONG_SCHEME
    rest = s[len(_SCHEME) :]
    slash = rest.find("/")
    name, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    return _must_be_found(_trust_domain_problem(name) or _path_problem(path), s)


def _must_be_found(problem: SpiffeIdRule | None, s: str) -> SpiffeIdRule:
    # The fast path and the diagnosis encode the same rules; if the diagnosis finds nothing
    # they disagree, and that must fail loudly rather than accept the input.
    if problem is None:
        raise RuntimeError(f"SPIFFE ID rules disagree on {s!r}")
    return problem


def _new_trust_domain(name: str) -> TrustDomain:
    td = object.__new__(TrustDomain)
    object.__setattr__(td, "name", name)
    return td


def _new_spiffe_id(trust_domain: TrustDomain, path: str) -> SpiffeId:
    sid = object.__new__(SpiffeId)
    object.__setattr__(sid, "trust_domain", trust_domain)
    object.__setattr__(sid, "path", path)
    return sid


@dataclass(frozen=True, order=True, slots=True)
class TrustDomain:
    """The trust domain part of a SPIFFE ID, e.g. ``example.org``.

    ``TrustDomain(x)`` validates like :meth:`parse`, so it also accepts a SPIFFE ID and
    keeps only its trust domain; ``name`` is always the bare, valid name.
    """

    name: str

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str):
            raise TypeError(f"trust domain name must be a str, got {type(name).__name__}")
        if _TRUST_DOMAIN_RE.fullmatch(name) and len(name) <= _MAX_TRUST_DOMAIN_BYTES:
            return
        object.__setattr__(self, "name", TrustDomain.parse(name).name)

    @classmethod
    def parse(cls, id_or_name: str) -> TrustDomain:
        """Read a trust domain from a bare name or from a ``spiffe://`` ID (as go-spiffe).

        Raises TrustDomainError (a SpiffeIdError) naming the broken rule.
        """
        if _TRUST_DOMAIN_RE.fullmatch(id_or_name) and len(id_or_name) <= _MAX_TRUST_DOMAIN_BYTES:
            return _new_trust_domain(id_or_name)
        # ":/" rather than "://": "spiffe:/x" then gets the scheme diagnosis, not "bad char".
        if ":/" in id_or_name:
            try:
                return SpiffeId.parse(id_or_name).trust_domain
            except SpiffeIdError as e:
                raise TrustDomainError(e.rule, id_or_name) from None
        problem = _must_be_found(_trust_domain_problem(id_or_name), id_or_name)
        raise TrustDomainError(problem, id_or_name)

    @classmethod
    def from_spiffe(cls, td: spiffe.TrustDomain) -> TrustDomain:
        """Convert from py-spiffe, re-validating strictly."""
        return cls.parse(td.name)

    def id(self) -> SpiffeId:
        """The SPIFFE ID of the trust domain itself, ``spiffe://<name>``."""
        return _new_spiffe_id(self, "")

    def to_spiffe(self) -> spiffe.TrustDomain:
        """The py-spiffe equivalent (``spiffe.TrustDomain``)."""
        import spiffe

        return spiffe.TrustDomain(self.name)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"TrustDomain({self.name!r})"


@dataclass(frozen=True, order=True, slots=True)
class SpiffeId:
    """A SPIFFE ID: a trust domain plus a (possibly empty) path.

    ``str()`` gives the URI. Ordering is by trust domain, then path. Construct with
    :meth:`parse`, :meth:`from_parts`, or ``SpiffeId(trust_domain, "/a/b")`` (the path is
    validated as a whole).
    """

    trust_domain: TrustDomain
    path: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.trust_domain, TrustDomain):
            raise TypeError(
                f"trust_domain must be a TrustDomain, got {type(self.trust_domain).__name__}"
            )
        path = self.path
        uri = _SCHEME + self.trust_domain.name + path
        if _PATH_RE.fullmatch(path) and not _has_dot_segment(path) and len(uri) <= _MAX_ID_BYTES:
            return  # the fast path: valid input (every listed entry has two IDs)
        problem = _path_problem(path)
        if problem is None and _byte_length(uri) > _MAX_ID_BYTES:
            problem = SpiffeIdRule.TOO_LONG
        if problem is not None:
            raise SpiffeIdError(problem, uri)

    @classmethod
    def parse(cls, s: str) -> SpiffeId:
        """Parse a SPIFFE ID URI; raise SpiffeIdError naming the broken rule."""
        m = _ID_RE.fullmatch(s)
        if (
            m is not None
            and len(s) <= _MAX_ID_BYTES
            and len(m.group(1)) <= _MAX_TRUST_DOMAIN_BYTES
            and not _has_dot_segment(m.group(2))
        ):
            return _new_spiffe_id(_new_trust_domain(m.group(1)), m.group(2))
        raise SpiffeIdError(_id_problem(s), s)

    @classmethod
    def from_parts(cls, trust_domain: TrustDomain | str, *segments: str) -> SpiffeId:
        """Build an ID from a trust domain and path segments, each validated on its own.

        A segment may not contain ``/``: this is for assembling IDs from values (a
        namespace, a service account) where a slash would silently add a level.
        """
        td = trust_domain if isinstance(trust_domain, TrustDomain) else TrustDomain(trust_domain)
        for segment in segments:
            problem = _segment_problem(segment)
            if problem is not None:
                raise SpiffeIdError(problem, segment, subject="SPIFFE ID path segment")
        path = "".join("/" + segment for segment in segments)
        uri = _SCHEME + td.name + path
        if len(uri) > _MAX_ID_BYTES:
            raise SpiffeIdError(SpiffeIdRule.TOO_LONG, uri)
        return _new_spiffe_id(td, path)

    @classmethod
    def from_spiffe(cls, spiffe_id: spiffe.SpiffeId) -> SpiffeId:
        """Convert from py-spiffe, re-validating strictly."""
        return cls.parse(str(spiffe_id))

    def member_of(self, trust_domain: TrustDomain) -> bool:
        """Whether this ID belongs to ``trust_domain``."""
        return self.trust_domain == trust_domain

    @property
    def segments(self) -> tuple[str, ...]:
        """The path's segments, without the leading slash (``()`` for a trust domain's own ID)."""
        return tuple(self.path.split("/")[1:]) if self.path else ()

    def to_spiffe(self) -> spiffe.SpiffeId:
        """The py-spiffe equivalent (``spiffe.SpiffeId``)."""
        import spiffe

        return spiffe.SpiffeId(str(self))

    def __str__(self) -> str:
        return _SCHEME + self.trust_domain.name + self.path

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.spiffe_id(self)

    def __repr__(self) -> str:
        return f"SpiffeId({str(self)!r})"
