"""mTLS handshakes per second: a server on spire_fabric.tls vs a plain stdlib ssl server.

Both servers use the same X509-SVID (key and chain), the same trust roots, TLS settings
(TLS >= 1.2, no session tickets, so every connection is a full handshake) and the same
accept-handshake-reply-close loop in a child process; only the context differs. Ours adds
the SNI swap onto the snapshot context and the SPIFFE check (chain against the peer's own
trust domain + authorize_id) inside every handshake. The same plain stdlib client, in the
parent process, drives both. Rounds alternate; medians are compared. Target >= 0.85x.

    .venv/bin/python benchmarks/bench_handshakes.py [seconds-per-round]
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import ssl
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from spire_fabric.identity import BundleSet, SpiffeId, TrustDomain, X509Bundle, X509Svid
from spire_fabric.tls import authorize_id, mtls_server_context

SERVER_ID = "spiffe://td-a.test/server"
CLIENT_ID = "spiffe://td-b.test/client"


def _usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(True, False, False, False, False, ca, ca, False, False)


def _ca(td: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, td)])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(True), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{td}")]), False
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert, key


def _svid(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], spiffe_id: str) -> X509Svid:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "w")]))
        .issuer_name(ca[0].subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), False
        )
        .sign(ca[1], hashes.SHA256())
    )  # fmt: skip
    return X509Svid(SpiffeId.parse(spiffe_id), (cert,), key)


def _files(svid: X509Svid, directory: str, name: str) -> tuple[str, str]:
    cert, key = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")
    with open(cert, "wb") as f:
        f.write(svid.cert_chain_pem())
    with open(key, "wb") as f:
        f.write(svid.private_key_pem())
    return cert, key


class _Static:
    def __init__(self, svid: X509Svid) -> None:
        self.svid = svid

    def get_x509_svid(self) -> X509Svid:
        return self.svid


def _serve(kind: str, material: dict, ready, port_out) -> None:  # type: ignore[no-untyped-def]
    bundles = BundleSet(
        [X509Bundle.parse_pem(TrustDomain(td), pem) for td, pem in material["bundles"].items()]
    )
    svid = X509Svid.parse_pem(material["server_cert"], material["server_key"])
    if kind == "spire_fabric":
        context: ssl.SSLContext = mtls_server_context(
            _Static(svid), bundles, authorize_id(CLIENT_ID)
        )
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        context.num_tickets = 0
        context.options |= ssl.OP_NO_TICKET
        context.load_verify_locations(cadata=b"".join(material["bundles"].values()).decode())
        with tempfile.TemporaryDirectory() as d:
            context.load_cert_chain(*_files(svid, d, "server"))
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    port_out.value = listener.getsockname()[1]
    ready.set()
    while True:
        raw, _ = listener.accept()
        try:
            conn = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            conn.do_handshake()
            conn.sendall(b"k")
            conn.close()
        except OSError:
            raw.close()


def _measure(port: int, client: ssl.SSLContext, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client.wrap_socket(raw) as conn,
        ):
            if conn.recv(1) != b"k":  # the server finished its check and answered
                raise RuntimeError("server refused the benchmark client")
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    ca_a, ca_b = _ca("td-a.test"), _ca("td-b.test")
    server_svid, client_svid = _svid(ca_a, SERVER_ID), _svid(ca_b, CLIENT_ID)
    pem = {td: X509Bundle(TrustDomain(td), (c[0],)).to_pem() for td, c in
           (("td-a.test", ca_a), ("td-b.test", ca_b))}  # fmt: skip
    material = {
        "bundles": pem,
        "server_cert": server_svid.cert_chain_pem(),
        "server_key": server_svid.private_key_pem(),
    }
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    client.load_verify_locations(cadata=b"".join(pem.values()).decode())
    with tempfile.TemporaryDirectory() as d:
        client.load_cert_chain(*_files(client_svid, d, "client"))

    ctx = multiprocessing.get_context("spawn")
    servers = {}
    for kind in ("spire_fabric", "stdlib"):
        ready, port = ctx.Event(), ctx.Value("i", 0)
        proc = ctx.Process(target=_serve, args=(kind, material, ready, port), daemon=True)
        proc.start()
        if not ready.wait(30):
            raise RuntimeError(f"{kind} server did not start")
        servers[kind] = (proc, port.value)
    try:
        for port in (p for _, p in servers.values()):
            _measure(port, client, 0.3)  # warm up
        results: dict[str, list[float]] = {"spire_fabric": [], "stdlib": []}
        for _ in range(5):
            for kind, (_, port) in servers.items():
                results[kind].append(_measure(port, client, seconds))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.join(5)
    ours, base = (statistics.median(results[k]) for k in ("spire_fabric", "stdlib"))
    print(
        f"cpus: {os.cpu_count()}, rounds: 5 x {seconds:.1f}s per server, TLS {ssl.OPENSSL_VERSION}"
    )
    print(
        f"spire_fabric.tls mtls_server_context: {ours:8.0f} handshakes/s  {results['spire_fabric']}"
    )
    print(f"plain stdlib ssl server (baseline):   {base:8.0f} handshakes/s  {results['stdlib']}")
    print(f"ratio: {ours / base:.2f}x (target >= 0.85x)")


if __name__ == "__main__":
    main()
