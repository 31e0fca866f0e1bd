"""A loopback tunnel that does SPIFFE mTLS for gRPC, because gRPC Python cannot.

Why: gRPC Python's TLS always runs a hostname check against the certificate's DNS SANs
(or CN), and a SPIRE server's X509-SVID has neither -- only the URI SAN
`spiffe://<td>/spire/server`. There is no hook for a custom verifier and clients get no
`auth_context()`. So the client speaks plain HTTP/2 to a private unix socket, and this
tunnel makes each connection to the server with the stdlib `ssl` module: our admin
X509-SVID as client certificate, ALPN "h2", the chain verified by OpenSSL against the
server trust domain's roots only, then the leaf checked to be a non-CA certificate whose
only URI SAN is exactly the expected server ID. A server that fails any check gets no
bytes from us.

Credentials are re-read from the sources for every new connection, so a rotated SVID or
bundle is used from the next reconnection on.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spire_fabric.errors import SpireFabricError
from spire_fabric.identity import SpiffeId

_PEM = serialization.Encoding.PEM
_CHUNK = 64 * 1024


class PeerIdError(ssl.SSLError, SpireFabricError):
    """The server presented a valid chain for another SPIFFE ID than the one expected."""


def check_server_certificate(der: bytes, expected: SpiffeId) -> None:
    """The X509-SVID leaf rules that matter here: not a CA, one URI SAN, the expected ID."""
    leaf = x509.load_der_x509_certificate(der)
    with contextlib.suppress(x509.ExtensionNotFound):
        if leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise PeerIdError(f"server presented a CA certificate, not an SVID for {expected}")
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as err:
        raise PeerIdError(f"server certificate has no SPIFFE ID; expected {expected}") from err
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if uris != [str(expected)]:
        raise PeerIdError(f"server SPIFFE ID is {uris or 'missing'}, expected {expected}")


class SpiffeTlsTunnel:
    """Accepts plain connections on a private unix socket, forwards them over SPIFFE mTLS.

    `make_context` builds a fresh client SSLContext (from the current SVID and bundle)
    for each connection.
    """

    def __init__(
        self,
        remote: tuple[str, int],
        server_id: SpiffeId,
        make_context: Callable[[], ssl.SSLContext],
        connect_timeout: float = 10.0,
    ) -> None:
        self.remote = remote
        self.server_id = server_id
        self._make_context = make_context
        self._connect_timeout = connect_timeout
        self._dir = Path(tempfile.mkdtemp(prefix="sf-tun-", dir="/tmp"))
        os.chmod(self._dir, 0o700)  # only this user may reach the tunnel's socket
        self.path = self._dir / "s"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(64)
        self._closed = threading.Event()
        #: Why the last connection to the server failed (shown in the client's errors).
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._accept_loop, name="spiffe-tls", daemon=True)
        self._thread.start()

    @property
    def target(self) -> str:
        return f"unix://{self.path}"

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                local, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(local,), daemon=True).start()

    def _serve(self, local: socket.socket) -> None:
        try:
            remote = self._connect()
        except (OSError, ssl.SSLError) as err:
            # gRPC sees the connection drop and reports UNAVAILABLE, then reconnects.
            self.last_error = f"{type(err).__name__}: {err}"
            local.close()
            return
        self.last_error = None
        _relay(local, remote)

    def _connect(self) -> ssl.SSLSocket:
        context = self._make_context()
        raw = socket.create_connection(self.remote, timeout=self._connect_timeout)
        try:
            tls = context.wrap_socket(raw, server_hostname=None)
            der = tls.getpeercert(binary_form=True)
            if der is None:
                raise PeerIdError("server presented no certificate")
            check_server_certificate(der, self.server_id)
            if tls.selected_alpn_protocol() != "h2":
                raise ssl.SSLError("server did not agree to HTTP/2 (ALPN h2)")
        except BaseException:
            raw.close()
            raise
        tls.settimeout(None)
        return tls


def _relay(local: socket.socket, remote: ssl.SSLSocket) -> None:
    """Copy bytes both ways in ONE thread: an OpenSSL connection must not be read and
    written from two threads at once."""
    try:
        while True:
            ready = [remote] if remote.pending() else select.select([local, remote], [], [])[0]
            for src in ready:
                data = src.recv(_CHUNK)
                if not data:
                    return
                (remote if src is local else local).sendall(data)
    except OSError:  # ssl.SSLError is an OSError
        pass
    finally:
        for s in (local, remote):
            with contextlib.suppress(OSError):
                s.close()


def client_context(
    cert_chain: list[x509.Certificate], private_key: object, roots: list[x509.Certificate]
) -> ssl.SSLContext:
    """An SSLContext with our SVID, trusting only `roots`, and no hostname check (the SPIFFE
    ID check replaces it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=b"".join(c.public_bytes(_PEM) for c in roots).decode())
    ctx.set_alpn_protocols(["h2"])
    key_pem = private_key.private_bytes(  # type: ignore[attr-defined]
        _PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # ssl can only load a key from a file: write it to a private dir and remove it at once.
    tmp = Path(tempfile.mkdtemp(prefix="sf-key-", dir="/tmp"))
    try:
        os.chmod(tmp, 0o700)
        path = tmp / "svid.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(b"".join(c.public_bytes(_PEM) for c in cert_chain) + key_pem)
        ctx.load_cert_chain(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ctx
