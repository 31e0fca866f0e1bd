"""Our bundle endpoint client and server against each other, over real loopback TLS."""

from __future__ import annotations

import dataclasses
import http.server
import itertools
import ssl
import tempfile
import threading
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spire_fabric.federation import (
    BundleWatcher,
    FederationError,
    fetch_bundle,
    serve_bundle_endpoint,
)
from spire_fabric.identity import SpiffeBundle, TrustDomain
from spire_fabric.testing.pki import MutableSvidSource, make_ca, make_svid

TD = TrustDomain("td-c.test")
ENDPOINT_ID = "spiffe://td-c.test/bundle-endpoint"


def _bundle(*cas, hint=None, seq=None) -> SpiffeBundle:
    jwt_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return SpiffeBundle(
        TD, tuple(c.cert for c in cas), {"kid-1": jwt_key}, refresh_hint=hint, sequence_number=seq
    )


def test_client_fetches_the_served_bundle_over_https_spiffe() -> None:
    ca = make_ca("td-c.test")
    served = _bundle(ca, seq=7)
    with serve_bundle_endpoint(
        served,
        TD,
        make_svid(ca, ENDPOINT_ID),
        refresh_hint=timedelta(seconds=90),
    ) as endpoint:
        got = fetch_bundle(endpoint.url, TD, endpoint_id=ENDPOINT_ID, bundle_source=served)
    assert got.x509_authorities == served.x509_authorities
    assert dict(got.jwt_authorities) == dict(served.jwt_authorities)
    assert got.sequence_number == 7
    assert got.refresh_hint == timedelta(seconds=90)


def test_fetch_refuses_an_endpoint_with_another_spiffe_id() -> None:
    ca = make_ca("td-c.test")
    served = _bundle(ca)
    svid = make_svid(ca, "spiffe://td-c.test/impostor")
    with (
        serve_bundle_endpoint(served, TD, svid) as endpoint,
        pytest.raises(FederationError, match=r"impostor.*is not authorized"),
    ):
        fetch_bundle(endpoint.url, TD, endpoint_id=ENDPOINT_ID, bundle_source=served)


def test_fetch_refuses_an_endpoint_whose_svid_chains_to_another_trust_domain() -> None:
    real, rogue = make_ca("td-c.test"), make_ca("td-x.test")
    served = _bundle(rogue)
    svid = make_svid(rogue, ENDPOINT_ID)
    with (
        serve_bundle_endpoint(served, TD, svid) as endpoint,
        pytest.raises(FederationError, match="could not fetch bundle"),
    ):
        fetch_bundle(endpoint.url, TD, endpoint_id=ENDPOINT_ID, bundle_source=_bundle(real))


def test_https_spiffe_needs_an_endpoint_id_and_a_bundle() -> None:
    with pytest.raises(FederationError, match="needs endpoint_id"):
        fetch_bundle("https://127.0.0.1:1/", TD)


def test_plain_http_url_is_refused() -> None:
    with pytest.raises(FederationError, match="must be https"):
        fetch_bundle("http://127.0.0.1:1/", TD, profile="https_web")


def _web_server(body: bytes, status: int = 200):
    """An https_web endpoint: a DNS/IP-named certificate from a private web CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web CA")])
    ca = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    directory = Path(tempfile.mkdtemp())
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "leaf.pem").write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "leaf.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    ).start()
    return server, str(directory / "ca.pem")


def test_https_web_profile_uses_the_given_ca_file_and_checks_the_hostname() -> None:
    bundle = _bundle(make_ca("td-c.test"))
    server, ca_file = _web_server(bundle.marshal())
    url = f"https://127.0.0.1:{server.server_address[1]}/bundle"
    try:
        got = fetch_bundle(url, TD, profile="https_web", ca_file=ca_file)
        assert got.x509_authorities == bundle.x509_authorities
        with pytest.raises(FederationError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch_bundle(url, TD, profile="https_web")  # system roots do not know our CA
    finally:
        server.shutdown()
        server.server_close()


def test_http_error_and_bad_bundle_are_reported_with_the_url() -> None:
    server, ca_file = _web_server(b"nope", status=404)
    url = f"https://127.0.0.1:{server.server_address[1]}/"
    try:
        with pytest.raises(FederationError, match=r"answered HTTP 404"):
            fetch_bundle(url, TD, profile="https_web", ca_file=ca_file)
    finally:
        server.shutdown()
        server.server_close()
    server, ca_file = _web_server(b'{"keys": "x"}')
    url = f"https://127.0.0.1:{server.server_address[1]}/"
    try:
        with pytest.raises(FederationError, match="is invalid"):
            fetch_bundle(url, TD, profile="https_web", ca_file=ca_file)
    finally:
        server.shutdown()
        server.server_close()


def test_watcher_follows_a_ca_rotation_authenticating_with_its_latest_bundle() -> None:
    """SPIRE's model: the endpoint proves itself with keys from the bundle it serves."""
    old, new = make_ca("td-c.test"), make_ca("td-c.test", "CA 2")
    holder = {"bundle": _bundle(old)}

    class Source:
        def get(self, td):
            return holder["bundle"]

        def get_x509_bundle_for_trust_domain(self, td):
            return holder["bundle"].x509_bundle()

    svid = MutableSvidSource(make_svid(old, ENDPOINT_ID))
    with serve_bundle_endpoint(Source(), TD, svid) as endpoint:
        watcher = BundleWatcher(
            TD,
            endpoint.url,
            endpoint_id=ENDPOINT_ID,
            initial_bundle=old.bundle("td-c.test"),
            min_refresh=timedelta(milliseconds=50),
            default_refresh=timedelta(milliseconds=50),
        )
        with watcher:
            assert watcher.wait_for_fetches(1, timeout=10)
            holder["bundle"] = _bundle(old, new)  # new CA published first ...
            assert watcher.wait_for_fetches(watcher.fetches + 2, timeout=10)
            svid.svid = make_svid(new, ENDPOINT_ID)  # ... then the endpoint rotates to it
            holder["bundle"] = _bundle(new)
            assert watcher.wait_for_fetches(watcher.fetches + 3, timeout=10)
    assert watcher.bundle is not None
    assert watcher.bundle.x509_authorities == (new.cert,)
    assert watcher.get_x509_bundle_for_trust_domain(TD) is not None
    assert watcher.failures == 0


def test_watcher_clamps_the_refresh_hint_between_floor_and_ceiling() -> None:
    watcher = BundleWatcher(
        TD,
        "https://127.0.0.1:1/",
        endpoint_id=ENDPOINT_ID,
        min_refresh=timedelta(seconds=10),
        max_refresh=timedelta(minutes=10),
        default_refresh=timedelta(minutes=5),
    )
    bundle = _bundle(make_ca("td-c.test"))
    assert watcher.next_refresh(dataclasses.replace(bundle, refresh_hint=timedelta(0))) == (
        timedelta(minutes=5)
    )
    assert watcher.next_refresh(
        dataclasses.replace(bundle, refresh_hint=timedelta(seconds=1))
    ) == timedelta(seconds=10)
    assert watcher.next_refresh(
        dataclasses.replace(bundle, refresh_hint=timedelta(days=2))
    ) == timedelta(minutes=10)
    assert watcher.next_refresh(None) == timedelta(minutes=5)


def test_watcher_backs_off_exponentially_on_errors_and_keeps_the_last_good_bundle() -> None:
    good = _bundle(make_ca("td-c.test"), hint=timedelta(seconds=1))
    results: list[object] = [good, FederationError("down"), FederationError("down"), good]
    calls: list[float] = []
    lock = threading.Condition()

    def fake_fetch(url, td, **kwargs):
        import time

        with lock:
            calls.append(time.monotonic())
            lock.notify_all()
            result = results.pop(0) if results else good
        if isinstance(result, Exception):
            raise result
        return result

    watcher = BundleWatcher(
        TD,
        "https://127.0.0.1:1/",
        endpoint_id=ENDPOINT_ID,
        min_refresh=timedelta(milliseconds=100),
        max_refresh=timedelta(seconds=1),
        fetch=fake_fetch,
    )
    assert watcher.retry_after(1) == timedelta(milliseconds=100)
    assert watcher.retry_after(3) == timedelta(milliseconds=400)
    assert watcher.retry_after(30) == timedelta(seconds=1)  # never beyond the normal interval
    with watcher, lock:
        assert lock.wait_for(lambda: len(calls) >= 4, timeout=10)
    assert watcher.bundle == good
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[0] >= 0.9  # after success: the 1 s refresh hint
    assert 0.09 <= gaps[1] < 0.5  # first retry: the floor
    assert 0.19 <= gaps[2] < 0.8  # second retry: doubled
