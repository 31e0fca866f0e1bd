"""CA rotation by hand through the LocalAuthority API, against a real server.

Every call is checked by what SPIRE reports after it: the authority states
(GetX509/JWTAuthorityState) and the bundle (tainted flags, authorities gone), never by the
call's own answer alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from spire_fabric.runtime.ca_hierarchy import create_root_ca, write_ca
from spire_fabric.server import (
    AsyncSpireServerClient,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    SpireServerClient,
)

pytestmark = pytest.mark.integration


def _skid(cert: x509.Certificate) -> str:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()


def _x509_in_bundle(client: SpireServerClient) -> dict[str, bool]:
    """Subject key ID -> tainted, of each X.509 authority of the server's bundle."""
    return {_skid(a.certificate): a.tainted for a in client.get_bundle().x509_authorities}


def _jwt_in_bundle(client: SpireServerClient) -> dict[str, bool]:
    return {a.key_id: a.tainted for a in client.get_bundle().jwt_authorities}


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


def test_x509_old_authority_is_tainted_then_revoked(client: SpireServerClient) -> None:
    first = client.get_authority_state("x509").active
    assert first is not None
    assert _x509_in_bundle(client) == {first.authority_id: False}
    # the active authority can be neither tainted nor revoked
    with pytest.raises(InvalidArgumentError, match="unable to taint current local authority"):
        client.taint_authority(first.authority_id, "x509")
    prepared = client.prepare_authority("x509")
    with pytest.raises(InvalidArgumentError, match="only Old local authorities can be tainted"):
        client.taint_authority(prepared.authority_id, "x509")
    client.activate_authority(prepared.authority_id, "x509")
    with pytest.raises(InternalError, match="not possible to revoke an untainted root CA"):
        client.revoke_authority(first.authority_id, "x509")

    tainted = client.taint_authority(first.authority_id, "x509")
    assert tainted.authority_id == first.authority_id
    assert _x509_in_bundle(client) == {first.authority_id: True, prepared.authority_id: False}

    revoked = client.revoke_authority(first.authority_id, "x509")
    assert revoked.authority_id == first.authority_id
    assert _x509_in_bundle(client) == {prepared.authority_id: False}
    state = client.get_authority_state("x509")
    assert state.active is not None and state.active.authority_id == prepared.authority_id


def test_jwt_old_key_is_tainted_then_revoked(client: SpireServerClient) -> None:
    first = client.get_authority_state("jwt").active
    assert first is not None
    prepared = client.prepare_authority("jwt")
    assert _jwt_in_bundle(client) == {first.authority_id: False, prepared.authority_id: False}
    with pytest.raises(InvalidArgumentError, match="only Old local authorities"):
        client.taint_authority(prepared.authority_id, "jwt")
    client.activate_authority(prepared.authority_id, "jwt")
    state = client.get_authority_state("jwt")
    assert state.old is not None and state.old.authority_id == first.authority_id

    assert client.taint_authority(first.authority_id, "jwt").authority_id == first.authority_id
    assert _jwt_in_bundle(client) == {first.authority_id: True, prepared.authority_id: False}
    with pytest.raises(InternalError, match="failed to taint JWT authority"):
        client.taint_authority(first.authority_id, "jwt")
    assert client.revoke_authority(first.authority_id, "jwt").authority_id == first.authority_id
    assert _jwt_in_bundle(client) == {prepared.authority_id: False}


async def test_local_authority_calls_over_asyncio(
    client: SpireServerClient, aclient: AsyncSpireServerClient
) -> None:
    first = (await aclient.get_authority_state("x509")).active
    assert first is not None
    prepared = await aclient.prepare_authority("x509")
    assert (await aclient.get_authority_state("x509")).prepared == prepared
    await aclient.activate_authority(prepared.authority_id, "x509")
    await aclient.taint_authority(first.authority_id, "x509")
    assert _x509_in_bundle(client) == {first.authority_id: True, prepared.authority_id: False}
    await aclient.revoke_authority(first.authority_id, "x509")
    assert _x509_in_bundle(client) == {prepared.authority_id: False}
    with pytest.raises(FailedPreconditionError, match="upstream authority is not configured"):
        await aclient.taint_upstream_authority(first.authority_id)
    with pytest.raises(FailedPreconditionError, match="upstream authority is not configured"):
        await aclient.revoke_upstream_authority(first.authority_id)
    jwt = await aclient.prepare_authority("jwt")
    await aclient.activate_authority(jwt.authority_id, "jwt")
    old = (await aclient.get_authority_state("jwt")).old
    assert old is not None
    await aclient.taint_authority(old.authority_id, "jwt")
    assert _jwt_in_bundle(client) == {old.authority_id: True, jwt.authority_id: False}
    await aclient.revoke_authority(old.authority_id, "jwt")
    assert _jwt_in_bundle(client) == {jwt.authority_id: False}


def _disk_upstream(directory: Path) -> str:
    return f"""  UpstreamAuthority "disk" {{
    plugin_data {{
      cert_file_path = "{directory / "upstream.crt"}"
      key_file_path = "{directory / "upstream.key"}"
    }}
  }}"""


def test_upstream_authority_is_tainted_then_revoked(tmp_path, spire_server_factory) -> None:
    """The upstream authority (disk, a self-signed CA) is replaced on disk; the next
    prepared authority is signed by the new one, and the old upstream is tainted and
    revoked by its subject key ID."""
    first_root = create_root_ca("First Upstream")
    write_ca(first_root, tmp_path, "upstream")
    server = spire_server_factory("example.org", extra_plugins=_disk_upstream(tmp_path))
    with SpireServerClient(f"unix://{server.socket_path}", timeout=15) as client:
        first = client.get_authority_state("x509").active
        assert first is not None
        first_skid = _skid(first_root.certificate)
        assert first.upstream_authority_subject_key_id == first_skid
        assert _x509_in_bundle(client) == {first_skid: False}
        with pytest.raises(FailedPreconditionError, match="can't be tainted if there is an up"):
            client.taint_authority(first.authority_id, "x509")

        second_root = create_root_ca("Second Upstream")
        write_ca(second_root, tmp_path, "upstream")  # the disk plugin rereads it per CA
        second_skid = _skid(second_root.certificate)
        prepared = client.prepare_authority("x509")
        assert prepared.upstream_authority_subject_key_id == second_skid
        assert _x509_in_bundle(client) == {first_skid: False, second_skid: False}
        with pytest.raises(InvalidArgumentError, match="upstream authority singing current"):  # sic
            client.taint_upstream_authority(first_skid)  # still signing the active one
        client.activate_authority(prepared.authority_id, "x509")

        assert client.taint_upstream_authority(first_skid.upper()) == first_skid
        assert _x509_in_bundle(client) == {first_skid: True, second_skid: False}
        assert client.revoke_upstream_authority(first_skid) == first_skid
        assert _x509_in_bundle(client) == {second_skid: False}
