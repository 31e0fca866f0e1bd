"""The go-spiffe peer (tests/drill) before the drill relies on it: built from go-spiffe
v2.6.0 and cached, it accepts what go-spiffe accepts and refuses, with go-spiffe's reason,
an SVID of an authority it does not hold, the wrong trust domain's SVID, a JWT-SVID of an
unknown key and one for another audience. Bundles in both formats it takes (SPIFFE bundle
JSON and PEM)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from drill.gospiffe import GoSpiffePeer, program

from spire_fabric.identity import SpiffeBundle, TrustDomain
from spire_fabric.testing.pki import Ca, make_ca, make_svid

TD = "example.org"
ID = f"spiffe://{TD}/workload"


def _token(key: ec.EllipticCurvePrivateKey, kid: str, audience: str) -> str:
    now = int(time.time())
    return pyjwt.encode({"sub": ID, "aud": [audience], "exp": now + 300, "iat": now}, key,
                        algorithm="ES256", headers={"kid": kid})  # fmt: skip


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[GoSpiffePeer, Ca, ec.EllipticCurvePrivateKey]]:
    ca = make_ca(TD)
    other = make_ca("other.org")
    jwt_key = ec.generate_private_key(ec.SECP256R1())
    bundle = SpiffeBundle(TrustDomain(TD), (ca.cert,), {"k1": jwt_key.public_key()})
    pem = other.cert.public_bytes(serialization.Encoding.PEM)
    with GoSpiffePeer({TD: bundle.marshal(), "other.org": pem}) as peer:
        yield peer, ca, jwt_key


def test_the_program_is_built_once_and_cached_by_version_and_source() -> None:
    assert program().is_built()
    assert program().version.startswith("2.6.0-")


def test_an_svid_of_a_held_authority_is_accepted(world) -> None:  # type: ignore[no-untyped-def]
    peer, ca, _ = world
    verdict = peer.verify_x509(make_svid(ca, ID))
    assert verdict.accepted and verdict.output == f"accepted {ID}"


def test_an_svid_of_an_authority_it_does_not_hold_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    peer, _, _ = world
    verdict = peer.verify_x509(make_svid(make_ca(TD, "leaked"), ID))
    assert not verdict.accepted
    assert verdict.output.startswith("refused: x509svid: could not verify leaf certificate"), (
        verdict.output)  # fmt: skip


def test_an_svid_signed_by_another_trust_domains_authority_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    peer, ca, _ = world
    forged = make_svid(ca, "spiffe://other.org/workload")  # example.org's CA, other.org's ID
    verdict = peer.verify_x509(forged)
    assert not verdict.accepted and "could not verify leaf certificate" in verdict.output


def test_a_jwt_svid_is_accepted_only_with_a_held_key_and_its_audience(world) -> None:  # type: ignore[no-untyped-def]
    peer, _, key = world
    assert peer.verify_jwt(_token(key, "k1", "api"), "api").accepted
    wrong_audience = peer.verify_jwt(_token(key, "k1", "api"), "gateway")
    assert not wrong_audience.accepted and "audience" in wrong_audience.output
    unknown = peer.verify_jwt(_token(ec.generate_private_key(ec.SECP256R1()), "k2", "api"), "api")
    assert not unknown.accepted
    assert 'jwtsvid: no JWT authority "k2" found for trust domain' in unknown.output
    forged = peer.verify_jwt(_token(ec.generate_private_key(ec.SECP256R1()), "k1", "api"), "api")
    assert not forged.accepted and "error in cryptographic primitive" in forged.output
