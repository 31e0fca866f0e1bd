"""JWT-SVID validation against a bundle source, ours or py-spiffe's.

Why apart from ``_jwt_svid``: taking py-spiffe's sources needs the py-spiffe bridge
(``_pyspiffe``), and the bridge converts py-spiffe's JWT-SVIDs into our :class:`JwtSvid`.
With the validation here, above both (as ``_x509_verify`` is for X.509), the bridge and the
value type do not import each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, cast

from ._jwt_svid import JwtSvid, _expected_audience, _parse
from ._pyspiffe import jwt_bundle_source_of
from ._sources import JwtBundleSource, is_pyspiffe

if TYPE_CHECKING:
    import spiffe

__all__ = ["parse_and_validate_jwt_svid"]


def parse_and_validate_jwt_svid(
    token: str,
    bundle_source: JwtBundleSource | spiffe.JwtSource | spiffe.JwtBundleSet | spiffe.JwtBundle,
    audience: Iterable[str],
    *,
    now: datetime | None = None,
) -> JwtSvid:
    """Parse a JWT-SVID and validate signature, expiry and audience.

    The signing key is found by ``kid`` in the JWT bundle of the ``sub`` ID's own trust
    domain, so a key of another (even federated) trust domain cannot sign for it.
    ``audience`` must be non-empty; the token must name at least one of its entries.
    ``bundle_source`` may be a py-spiffe ``JwtSource``, ``JwtBundleSet`` or ``JwtBundle``.
    """
    source = cast(JwtBundleSource, bundle_source)
    if is_pyspiffe(bundle_source):
        source = jwt_bundle_source_of(bundle_source)
    return _parse(token, _expected_audience(audience), source, now)
