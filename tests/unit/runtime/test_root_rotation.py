"""`rotate root`'s pieces that need no SPIRE: the CA store's generations (made once,
kept until revoked, promoted whole), the refusals of topologies it cannot rotate, the
CLI's bad input, and the leaked-intermediate window the authorities report states. The
drill itself runs against real SPIRE in tests/e2e/test_rotate_root.py."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spire_fabric.deploy.cli import main
from spire_fabric.runtime.core import CaStore
from spire_fabric.runtime.core.root_rotation import rotate_root
from spire_fabric.runtime.core.rotation import RotationRefused
from spire_fabric.topology import DiskUpstreamAuthority, SpireUpstreamAuthority, preset
from spire_fabric.verify._authorities import leak_exposure, skid

ENTERPRISE = preset("enterprise")


def _root_id(store: CaStore) -> str:
    root = store.root(ENTERPRISE)
    assert root is not None
    return skid(root.certificate)


def test_a_new_generation_is_made_once_kept_beside_the_old_and_promoted_whole(tmp_path):
    store = CaStore(tmp_path / "ca")
    store.ensure(ENTERPRISE)
    first = _root_id(store)
    assert store.generations().current == 1 and store.generations().next is None

    assert store.begin_generation(ENTERPRISE) == 2
    new = _root_id(store.generation(2))
    assert new != first
    assert store.begin_generation(ENTERPRISE) == 2  # idempotent: a crash resumes the same keys
    assert _root_id(store.generation(2)) == new
    assert _root_id(store.generation(1)) == first == _root_id(store)  # current until promoted

    # what `trust-anchor` prints: the current root, and the new one once it is made
    assert [skid(r) for r in store.trusted_roots(ENTERPRISE)] == [first, new]
    store.promote(ENTERPRISE)
    assert (store.generations().current, store.generations().previous) == (2, 1)
    assert _root_id(store) == new
    assert [skid(r) for r in store.trusted_roots(ENTERPRISE)] == [new, first]  # until retired
    for s in ENTERPRISE.servers:  # every intermediate at the top now chains to the new root
        pem = store.signing_ca(ENTERPRISE, s)
        assert pem is not None
        inter = x509.load_pem_x509_certificates(pem.chain)[0]
        assert inter.issuer == store.root(ENTERPRISE).certificate.subject  # type: ignore[union-attr]
        constraints = inter.extensions.get_extension_for_class(x509.NameConstraints).value
        assert [n.value for n in constraints.permitted_subtrees or ()] == [s.trust_domain.name]

    with pytest.raises(ValueError, match="generation 1 is still kept"):
        store.begin_generation(ENTERPRISE)  # not before the old root is revoked
    store.retire()
    assert not (tmp_path / "ca" / "gen-1").exists()
    assert [skid(r) for r in store.trusted_roots(ENTERPRISE)] == [new]
    assert store.generations() == type(store.generations())(2, None, None)


def test_the_bridge_signing_ca_is_the_root_itself_with_its_key(tmp_path):
    store = CaStore(tmp_path / "ca")
    store.ensure(ENTERPRISE)
    bridge = store.root_as_signing_ca(ENTERPRISE)
    root = store.root(ENTERPRISE)
    assert root is not None
    assert x509.load_pem_x509_certificate(bridge.chain) == root.certificate
    assert x509.load_pem_x509_certificate(bridge.root) == root.certificate
    key = serialization.load_pem_private_key(bridge.key, password=None)
    assert key.public_key() == root.certificate.public_key()


def _double(topology):
    return types.SimpleNamespace(topology=topology)  # refused before anything else is asked


def test_a_topology_without_an_enterprise_root_is_refused() -> None:
    with pytest.raises(RotationRefused, match="topology 'basic' has no CA hierarchy"):
        rotate_root(_double(preset("basic")))  # type: ignore[arg-type]


def test_a_server_that_gets_its_ca_from_spire_is_refused_naming_it() -> None:
    nested = SpireUpstreamAuthority(server="spire-upstream-server", agent="upstream-agent")
    servers = tuple(dataclasses.replace(s, upstream_authority=nested)
                    if s.name == "spire-downstream-server" else s
                    for s in ENTERPRISE.servers)  # fmt: skip
    t = dataclasses.replace(ENTERPRISE, servers=servers)
    with pytest.raises(RotationRefused, match="spire-downstream-server gets its CA another way"):
        rotate_root(_double(t))  # type: ignore[arg-type]


def test_ca_files_the_user_supplied_are_not_rotated() -> None:
    servers = []
    for s in ENTERPRISE.servers:
        ua = s.upstream_authority
        assert isinstance(ua, DiskUpstreamAuthority)
        if s.name == "spire-downstream-server":
            s = dataclasses.replace(s, upstream_authority=dataclasses.replace(
                ua, cert_file="/etc/pki/mine.crt"))  # fmt: skip
        servers.append(s)
    t = dataclasses.replace(ENTERPRISE, servers=tuple(servers))
    with pytest.raises(RotationRefused, match=r"spire-downstream-server reads CA files you "
                       r"supplied \(/etc/pki/mine.crt\)"):  # fmt: skip
        rotate_root(_double(t))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rotate", "root", "--server", "spire-upstream-server"], "rotate root takes no --server"),
        (["rotate", "x509"], "rotate x509 needs --server NAME"),
        (["rotate", "root", "--wait", "0"], "--wait must be a positive number of seconds, got 0"),
        (["rotate", "root", "--external-grace", "-1"],
         "--external-grace must be 0 or more seconds, got -1"),
        (["rotate", "root", "--external-grace", "nan"],
         "--external-grace must be 0 or more seconds, got nan"),
        (["rotate", "root", "--external-grace", "inf"],
         "--external-grace must be 0 or more seconds, got inf"),
        (["rotate", "root", "--wait", "nan"],
         "--wait must be a positive number of seconds, got nan"),
        (["rotate", "x509", "--server", "s", "--external-grace", "3"],
         "--external-grace is for rotate root"),
    ],
)
def test_rotate_bad_input_exits_2_naming_it_before_opening_anything(
    argv, message, capsys, tmp_path
) -> None:
    state = tmp_path / "state"
    assert main([*argv, "--state-dir", str(state)]) == 2
    assert message in capsys.readouterr().err
    assert not state.exists()


def test_a_leaked_intermediate_is_exposed_for_its_ttl_and_named_in_the_report() -> None:
    down = ENTERPRISE.server("spire-downstream-server")
    exposure = leak_exposure(ENTERPRISE, down)
    assert exposure is not None
    assert ENTERPRISE.ca is not None
    inter = next(i for i in ENTERPRISE.ca.intermediates if i.trust_domain == down.trust_domain)
    assert exposure.intermediate == inter.name
    assert exposure.window_seconds == int(inter.ttl.total_seconds())
    assert exposure.svid_ttl_seconds == int(down.default_x509_svid_ttl.total_seconds())
    assert exposure.ca_ttl_seconds == int(down.ca_ttl.total_seconds())
    assert "downstream.example.org identity" in exposure.text
    assert "rotate root --revoke" in exposure.text
    assert leak_exposure(preset("basic"), preset("basic").servers[0]) is None


def test_the_local_target_places_a_signing_ca_where_the_rendered_config_reads_it(tmp_path):
    from spire_fabric.render import render_server_config
    from spire_fabric.runtime.ca_hierarchy import SigningCa
    from spire_fabric.runtime.local import LocalDeployment, LocalSettings
    from spire_fabric.runtime.local.bootstrap import UpError

    d = LocalDeployment.create(ENTERPRISE, tmp_path / "state", LocalSettings())
    d.ensure_ca()
    placed = SigningCa(chain=b"chain\n", key=b"key\n", root=b"root\n")
    d.place_signing_ca("spire-downstream-server", placed)
    config = render_server_config(d.topology, "spire-downstream-server", d.paths)
    for field, data, mode in (("cert_file_path", b"chain\n", 0o644),
                              ("key_file_path", b"key\n", 0o600),
                              ("bundle_file_path", b"root\n", 0o644)):  # fmt: skip
        line = next(x for x in config.splitlines() if x.strip().startswith(field))
        path = Path(line.split("=", 1)[1].strip().strip('"'))
        assert path.read_bytes() == data, field
        assert path.stat().st_mode & 0o777 == mode, field
        assert path.parent == d.ca_directory  # the CA store's current files, as `up` wrote
    basic = LocalDeployment.create(preset("basic"), tmp_path / "basic", LocalSettings())
    with pytest.raises(UpError, match="spire-server reads no signing CA"):
        basic.place_signing_ca("spire-server", placed)

