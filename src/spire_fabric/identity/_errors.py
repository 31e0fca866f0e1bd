"""The one exception tree of the identity package.

::

    IdentityError(SpireFabricError, ValueError)
    ├── SpiffeIdError          .rule names the SPIFFE ID rule that was broken
    │   └── TrustDomainError   raised where a trust domain (not a whole ID) was expected
    ├── BundleError            X.509 / JWT / SPIFFE bundle documents
    ├── X509SvidError          X509-SVID parsing and chain verification
    └── JwtSvidError           JWT-SVID parsing and validation

Everything derives from ValueError because every one of these is "the input you handed
me is not acceptable"; callers that only care about that can catch ValueError.
Messages carry a go-spiffe style prefix (``x509svid:``, ``jwtsvid:``, ...) so a log line
says which check refused the input.
"""

from __future__ import annotations

from enum import Enum

from spire_fabric.errors import SpireFabricError

__all__ = [
    "BundleError",
    "IdentityError",
    "JwtSvidError",
    "SpiffeIdError",
    "SpiffeIdRule",
    "TrustDomainError",
    "X509SvidError",
]

# Long inputs are cut in messages so a hostile 1 MB "ID" does not flood the logs.
_MAX_SHOWN = 120


class SpiffeIdRule(str, Enum):
    """The rule of the SPIFFE ID spec an input broke; the value is the human message.

    Messages follow go-spiffe's spiffeid package where it has one, and are more specific
    where go-spiffe folds several causes into "bad character" (port, userinfo, query,
    fragment, percent-encoding), because the user has to know which part to remove.
    """

    EMPTY = "cannot be empty"
    TOO_LONG = "SPIFFE ID cannot be longer than 2048 bytes"
    WRONG_SCHEME = "scheme is missing or invalid (expected lowercase 'spiffe://')"
    MISSING_TRUST_DOMAIN = "trust domain is missing"
    BAD_TRUST_DOMAIN_CHAR = (
        "trust domain characters are limited to lowercase letters, numbers, dots, dashes, "
        "and underscores"
    )
    TRUST_DOMAIN_TOO_LONG = "trust domain cannot be longer than 255 bytes"
    PORT = "trust domain cannot contain a port"
    USERINFO = "trust domain cannot contain userinfo"
    QUERY = "SPIFFE ID cannot contain a query"
    FRAGMENT = "SPIFFE ID cannot contain a fragment"
    PERCENT_ENCODED = "percent-encoded characters are not allowed"
    BAD_PATH_SEGMENT_CHAR = (
        "path segment characters are limited to letters, numbers, dots, dashes, and underscores"
    )
    DOT_SEGMENT = "path cannot contain dot segments"
    NO_LEADING_SLASH = "path must have a leading slash"
    EMPTY_SEGMENT = "path cannot contain empty segments"
    TRAILING_SLASH = "path cannot have a trailing slash"


class IdentityError(SpireFabricError, ValueError):
    """Base of every error raised by spire_fabric.identity."""


class SpiffeIdError(IdentityError):
    """A string is not a valid SPIFFE ID (or ID part); ``rule`` says which rule it broke."""

    subject = "SPIFFE ID"

    def __init__(self, rule: SpiffeIdRule, value: str, *, subject: str | None = None) -> None:
        self.rule = rule
        self.value = value
        shown = value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "..."
        super().__init__(f"invalid {subject or self.subject} {shown!r}: {rule.value}")


class TrustDomainError(SpiffeIdError):
    """A string is not a valid trust domain name (or SPIFFE ID to take it from).

    A subclass of SpiffeIdError, so ``except SpiffeIdError`` catches both.
    """

    subject = "trust domain"


class BundleError(IdentityError):
    """A bundle document or value is malformed; the message names the bad key or field."""


class X509SvidError(IdentityError):
    """An X509-SVID is malformed or its chain does not verify."""


class JwtSvidError(IdentityError):
    """A JWT-SVID is malformed, badly signed, expired or for another audience."""
