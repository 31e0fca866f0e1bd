"""Authorizers: plain functions that accept or refuse an already verified peer.

Shaped like go-spiffe's ``tlsconfig.Authorizer``: they run only after the peer's chain has
been verified against its own trust domain, get the peer ID and the verified chain, and
refuse by raising :class:`AuthorizationError`. Plain functions compose without a class
hierarchy: any ``Callable[[SpiffeId, list[x509.Certificate]], None]`` is an authorizer.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509

from spire_fabric.identity import SpiffeId, TrustDomain, as_trust_domain

from ._errors import AuthorizationError

__all__ = [
    "Authorizer",
    "authorize_any",
    "authorize_id",
    "authorize_member_of",
    "authorize_one_of",
    "authorize_predicate",
]

Authorizer = Callable[[SpiffeId, list[x509.Certificate]], None]


def _as_id(value: SpiffeId | str) -> SpiffeId:
    return value if isinstance(value, SpiffeId) else SpiffeId.parse(value)


def authorize_any() -> Authorizer:
    """Accept every peer whose SVID verified; trust-domain membership is the only check."""

    def authorize(peer: SpiffeId, chain: list[x509.Certificate]) -> None:
        return None

    return authorize


def authorize_id(expected: SpiffeId | str) -> Authorizer:
    """Accept exactly one SPIFFE ID (the usual choice for a client calling one service)."""
    want = _as_id(expected)

    def authorize(peer: SpiffeId, chain: list[x509.Certificate]) -> None:
        if peer != want:
            raise AuthorizationError(f'unexpected ID "{peer}", expected "{want}"')

    return authorize


def authorize_one_of(*expected: SpiffeId | str) -> Authorizer:
    """Accept any of the given IDs; refuses all peers when called with none."""
    allowed = frozenset(_as_id(e) for e in expected)
    shown = ", ".join(sorted(f'"{a}"' for a in allowed)) or "(none)"

    def authorize(peer: SpiffeId, chain: list[x509.Certificate]) -> None:
        if peer not in allowed:
            raise AuthorizationError(f'unexpected ID "{peer}", expected one of {shown}')

    return authorize


def authorize_member_of(trust_domain: TrustDomain | str) -> Authorizer:
    """Accept any ID of one trust domain (e.g. every workload of a federated partner)."""
    td = as_trust_domain(trust_domain)

    def authorize(peer: SpiffeId, chain: list[x509.Certificate]) -> None:
        if peer.trust_domain != td:
            raise AuthorizationError(
                f'unexpected trust domain "{peer.trust_domain}" of "{peer}", expected "{td}"'
            )

    return authorize


def authorize_predicate(
    predicate: Callable[[SpiffeId], bool], description: str = "the predicate"
) -> Authorizer:
    """Accept the IDs ``predicate`` returns True for (go-spiffe ``AdaptMatcher``).

    ``description`` names the rule in the refusal message, e.g. "a path under /billing".
    """

    def authorize(peer: SpiffeId, chain: list[x509.Certificate]) -> None:
        if not predicate(peer):
            raise AuthorizationError(f'ID "{peer}" does not match {description}')

    return authorize
