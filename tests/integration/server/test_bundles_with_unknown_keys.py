"""A real SPIRE bundle with keys we do not use added to it still validates SPIRE's tokens.

Issue 26: one ``oct`` key in a JWK Set rejected the whole bundle, so every JWT-SVID of the
trust domain failed. Here the bundle is SPIRE's own (``spire-server bundle show -format
spiffe``), the token is minted by the same server, and the added keys are what a peer might
publish next to its signing keys: an HMAC key, a key type from the future, an encryption key.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from spire_fabric.identity import (
    JwtBundle,
    SpiffeBundle,
    TrustDomain,
    parse_and_validate_jwt_svid,
)
from spire_fabric.server import SpireServerClient
from spire_fabric.testing import SpireServerProcess

pytestmark = pytest.mark.integration

TD = TrustDomain("example.org")
NOT_FOR_US: list[dict[str, Any]] = [
    {
        "use": "jwt-svid",
        "kty": "oct",
        "kid": "hmac-1",
        "k": "c2hhcmVkLXNlY3JldC1vZi0zMi1ieXRlcy4uLi4",
    },
    {"use": "jwt-svid", "kty": "AKP", "kid": "pq-1", "alg": "ML-DSA-44", "pub": "AAAA"},
    {"use": "enc", "kty": "EC", "kid": "enc-1", "crv": "P-256", "x": "AA", "y": "AA"},
]


def test_spire_bundle_with_keys_we_do_not_use_still_validates_spire_tokens(
    spire_server: SpireServerProcess,
    client: SpireServerClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="spire_fabric.identity")
    token = client.mint_jwt_svid("spiffe://example.org/web", ["db"], ttl=120).token
    doc = json.loads(spire_server.cli("bundle", "show", "-format", "spiffe").stdout)
    spire_kids = {k["kid"] for k in doc["keys"] if k.get("use") == "jwt-svid"}
    assert spire_kids, "SPIRE's bundle has no JWT authority"
    doc["keys"] = NOT_FOR_US + doc["keys"]

    spiffe_bundle = SpiffeBundle.parse(TD, json.dumps(doc))
    # The same keys as a plain JWK Set (what FetchJWTBundles carries): no SPIFFE members.
    plain = {"keys": [k for k in doc["keys"] if k.get("use") != "x509-svid"]}
    jwt_bundle = JwtBundle.parse_jwks(TD, json.dumps(plain))

    for bundle in (spiffe_bundle, jwt_bundle):
        assert set(bundle.jwt_authorities) == spire_kids
        svid = parse_and_validate_jwt_svid(token, bundle, ["db"])
        assert str(svid.spiffe_id) == "spiffe://example.org/web"
    ignored = [r.getMessage() for r in caplog.records if "ignoring keys[" in r.getMessage()]
    assert len(ignored) == 2 * len(NOT_FOR_US)
    assert any("kid 'hmac-1'" in m and "'oct'" in m for m in ignored)
