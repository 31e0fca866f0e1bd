"""MySQL's TLS material on the installer's machine: a datastore CA whose key stays there, a
server certificate per MySQL for its Service names, kept and renewed by `up` alone."""

from __future__ import annotations

import dataclasses
import datetime as dt
import stat

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID

from spire_fabric.runtime.kubernetes import _mysql_tls as mysql_tls
from spire_fabric.runtime.kubernetes._installer_secrets import SecretValues
from spire_fabric.runtime.kubernetes._mysql_tls import MySqlTlsStore
from spire_fabric.topology import preset


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_up_issues_a_server_certificate_per_mysql_for_its_service_names(tmp_path):
    t = preset("enterprise")
    values = SecretValues(tmp_path).values(t, make=True).mysql_tls
    assert sorted(values) == ["spire-downstream-server", "spire-upstream-server"]
    pem = values["spire-upstream-server"]
    cert, ca = _cert(pem.cert), _cert(pem.ca)
    cert.verify_directly_issued_by(ca)  # raises if not
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [
        "spire-upstream-mysql.spire-upstream.svc",
        "spire-upstream-mysql.spire-upstream.svc.cluster.local",
        "spire-upstream-mysql.spire-upstream",
        "spire-upstream-mysql",
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # the key MySQL gets is the certificate's; the CA's key is nowhere in the values
    key = load_pem_private_key(pem.key, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    ca_key = (tmp_path / "mysql-tls" / "datastore-ca.key").read_bytes()
    assert all(ca_key not in (p.cert, p.key, p.ca) for p in values.values())
    for name in ("datastore-ca.key", "spire-upstream-server.key"):
        assert stat.S_IMODE((tmp_path / "mysql-tls" / name).stat().st_mode) == 0o600
    # both servers' certificates come from the one datastore CA
    assert values["spire-downstream-server"].ca == pem.ca


def test_plan_and_render_make_nothing_and_later_calls_keep_what_up_made(tmp_path):
    t = preset("enterprise")
    assert SecretValues(tmp_path).values(t, make=False).mysql_tls == {}
    assert not (tmp_path / "mysql-tls").exists()
    first = SecretValues(tmp_path).values(t, make=True).mysql_tls
    assert SecretValues(tmp_path).values(t, make=False).mysql_tls == first
    assert SecretValues(tmp_path).values(t, make=True).mysql_tls == first


def test_a_certificate_near_its_end_or_for_other_names_is_issued_anew(tmp_path, monkeypatch):
    t = preset("enterprise")
    store = MySqlTlsStore(tmp_path)
    first = store.values(t, make=True)["spire-upstream-server"]
    # names changed: the server's MySQL now lives in another namespace
    s = t.server("spire-upstream-server")
    moved = dataclasses.replace(
        s, kubernetes=dataclasses.replace(s.kubernetes, namespace="elsewhere")
    )
    t2 = dataclasses.replace(t, servers=tuple(moved if x is s else x for x in t.servers))
    renamed = store.values(t2, make=True)["spire-upstream-server"]
    names = _cert(renamed.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName)[0] == "spire-upstream-mysql.elsewhere.svc"
    assert store.values(t2, make=True)["spire-upstream-server"] == renamed  # kept
    # near its end (renewal window wider than its whole year): issued anew, same CA
    monkeypatch.setattr(mysql_tls, "RENEW_BEFORE", dt.timedelta(days=366))
    renewed = store.values(t2, make=True)["spire-upstream-server"]
    assert renewed.cert != renamed.cert and renewed.ca == first.ca


def test_a_topology_without_mysql_on_kubernetes_gets_no_datastore_ca(tmp_path):
    for name in ("basic", "nested", "crd-free"):
        assert SecretValues(tmp_path / name).values(preset(name), make=True).mysql_tls == {}
        assert not (tmp_path / name / "mysql-tls").exists()
