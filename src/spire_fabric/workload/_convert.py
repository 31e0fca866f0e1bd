"""Workload API messages to identity values, and the immutable snapshots sources hold."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from spire_fabric.identity import (
    BundleSet,
    IdentityError,
    JwtBundle,
    JwtSvid,
    TrustDomain,
    X509Bundle,
    X509Svid,
    parse_insecure_jwt_svid,
)
from spire_fabric.proto.workload import workload_pb2

from ._errors import WorkloadApiResponseError

__all__ = ["X509Context"]


def _frozen(
    items: Iterable[tuple[TrustDomain, X509Bundle | JwtBundle]],
) -> Mapping[TrustDomain, Any]:
    return MappingProxyType(dict(sorted(items, key=lambda kv: kv[0].name)))


@dataclass(frozen=True, eq=False)
class X509Context:
    """The X509-SVIDs of this workload and every X.509 bundle it may trust (own and federated).

    Immutable: an update from the agent produces a new context; nothing is edited in place.
    """

    svids: tuple[X509Svid, ...]
    bundles: Mapping[TrustDomain, X509Bundle]

    @property
    def default_svid(self) -> X509Svid:
        """The first SVID, as the Workload API orders them (the spec's default identity)."""
        return self.svids[0]

    def get_x509_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> X509Bundle | None:
        """The X.509 bundle of ``trust_domain`` in this context, or None."""
        return self.bundles.get(trust_domain)

    def get_bundle_set(self) -> BundleSet[X509Bundle]:
        """A new BundleSet of all bundles (a copy: editing it does not touch this context)."""
        return BundleSet(self.bundles.values())


def _response_error(what: str, endpoint: str, err: Exception) -> WorkloadApiResponseError:
    return WorkloadApiResponseError(
        f"Workload API at {endpoint} sent an unusable {what}: {err}", endpoint=endpoint
    )


def x509_svid_from_message(message: workload_pb2.X509SVID, endpoint: str) -> X509Svid:
    try:
        return X509Svid.parse_der(message.x509_svid, message.x509_svid_key, hint=message.hint)
    except IdentityError as e:
        raise _response_error(f"X509-SVID for {message.spiffe_id!r}", endpoint, e) from e


def x509_bundles_from_map(
    bundles: Mapping[str, bytes], endpoint: str
) -> dict[TrustDomain, X509Bundle]:
    """Parse a ``{"spiffe://td": concatenated DER}`` map, as the agent sends bundles."""
    result: dict[TrustDomain, X509Bundle] = {}
    for key, der in bundles.items():
        try:
            td = TrustDomain.parse(key)
            result[td] = X509Bundle.parse_der(td, der)
        except IdentityError as e:
            raise _response_error(f"X.509 bundle for {key!r}", endpoint, e) from e
    return result


def x509_context_from_response(
    response: workload_pb2.X509SVIDResponse, endpoint: str
) -> X509Context:
    if not response.svids:
        raise WorkloadApiResponseError(
            f"Workload API at {endpoint} sent an X.509 SVID response without SVIDs",
            endpoint=endpoint,
        )
    svids = tuple(x509_svid_from_message(m, endpoint) for m in response.svids)
    # Each SVID carries the bundle of its own trust domain (go-spiffe parseX509Bundles);
    # federated bundles come in a separate map.
    bundles: dict[TrustDomain, X509Bundle] = {}
    for message, svid in zip(response.svids, svids, strict=True):
        td = svid.spiffe_id.trust_domain
        if td not in bundles and message.bundle:
            try:
                bundles[td] = X509Bundle.parse_der(td, message.bundle)
            except IdentityError as e:
                raise _response_error(f"X.509 bundle for {td.name!r}", endpoint, e) from e
    for td, bundle in x509_bundles_from_map(response.federated_bundles, endpoint).items():
        bundles.setdefault(td, bundle)
    return X509Context(svids, _frozen(bundles.items()))


def x509_bundles_from_response(
    response: workload_pb2.X509BundlesResponse, endpoint: str
) -> Mapping[TrustDomain, X509Bundle]:
    if not response.bundles:
        raise WorkloadApiResponseError(
            f"Workload API at {endpoint} sent an X.509 bundles response without bundles",
            endpoint=endpoint,
        )
    return _frozen(x509_bundles_from_map(response.bundles, endpoint).items())


def jwt_bundles_from_response(
    response: workload_pb2.JWTBundlesResponse, endpoint: str
) -> Mapping[TrustDomain, JwtBundle]:
    if not response.bundles:
        raise WorkloadApiResponseError(
            f"Workload API at {endpoint} sent a JWT bundles response without bundles",
            endpoint=endpoint,
        )
    result: dict[TrustDomain, JwtBundle] = {}
    for key, jwks in response.bundles.items():
        try:
            td = TrustDomain.parse(key)
            result[td] = JwtBundle.parse_jwks(td, jwks)
        except IdentityError as e:
            raise _response_error(f"JWT bundle for {key!r}", endpoint, e) from e
    return _frozen(result.items())


def jwt_svids_from_response(
    response: workload_pb2.JWTSVIDResponse, audience: tuple[str, ...], endpoint: str
) -> list[JwtSvid]:
    if not response.svids:
        raise WorkloadApiResponseError(
            f"Workload API at {endpoint} sent a JWT-SVID response without SVIDs",
            endpoint=endpoint,
        )
    return [jwt_svid_from_token(m.svid, audience, endpoint, hint=m.hint) for m in response.svids]


def jwt_svid_from_token(
    token: str, audience: tuple[str, ...], endpoint: str, *, hint: str = ""
) -> JwtSvid:
    # The token comes from our own agent over the local socket, a trusted channel, so the
    # signature is not checked again here (go-spiffe does the same: jwtsvid.ParseInsecure).
    try:
        svid = parse_insecure_jwt_svid(token, audience)
    except IdentityError as e:
        raise _response_error("JWT-SVID", endpoint, e) from e
    return dataclasses.replace(svid, hint=hint) if hint else svid


def bundle_set(bundles: Mapping[TrustDomain, X509Bundle | JwtBundle]) -> BundleSet:  # type: ignore[type-arg]
    """What watch streams hand out: a new BundleSet per update, never shared."""
    return BundleSet(bundles.values())
