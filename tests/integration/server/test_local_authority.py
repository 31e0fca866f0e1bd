"""CA rotation by hand through the LocalAuthority API, against a real server."""

from __future__ import annotations

from cryptography import x509

from spire_fabric.server import SpireServerClient


def _skid(cert: x509.Certificate) -> str:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()


def test_prepared_authority_joins_the_bundle_and_signs_once_activated(
    client: SpireServerClient,
) -> None:
    before = client.get_authority_state("x509")
    assert before.active is not None and before.prepared is None
    bundle_before = client.get_bundle()

    prepared = client.prepare_authority("x509")
    state = client.get_authority_state("x509")
    assert state.prepared == prepared and state.active == before.active
    bundle_after = client.get_bundle()
    assert len(bundle_after.x509_authorities) == len(bundle_before.x509_authorities) + 1

    activated = client.activate_authority(prepared.authority_id, "x509")
    assert activated.authority_id == prepared.authority_id
    state = client.get_authority_state("x509")
    assert state.active is not None and state.active.authority_id == prepared.authority_id
    assert state.old is not None and state.old.authority_id == before.active.authority_id
    # a fresh SVID now chains to the new authority (its issuer's key ID is the new one)
    minted = client.mint_x509_svid("spiffe://example.org/rotated")
    issuer = minted.cert_chain[0].extensions.get_extension_for_class(
        x509.AuthorityKeyIdentifier
    ).value.key_identifier
    assert issuer is not None and issuer.hex() == prepared.authority_id.lower()


def test_jwt_authority_state_names_the_active_key(client: SpireServerClient) -> None:
    state = client.get_authority_state("jwt")
    assert state.active is not None
    assert state.active.authority_id in {a.key_id for a in client.get_bundle().jwt_authorities}
