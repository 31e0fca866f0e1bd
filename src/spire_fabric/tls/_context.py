"""SSLContexts that follow SVID and bundle rotation and check the peer per trust domain.

How rotation works without mutating a context OpenSSL is using:

- Every (SVID, bundles, ALPN) snapshot gets its own ``ssl.SSLContext``, built once and
  never changed afterwards. A new one is built only when the source hands out a different
  SVID object or different bundles (sources replace snapshots atomically).
- Server side: the context the user passes to a framework is a fixed "front" context whose
  ``sni_callback`` (run by OpenSSL for every ClientHello, with or without SNI) swaps the
  connection onto the current snapshot. OpenSSL then uses that snapshot's certificate for
  the reply and its roots to pre-check the client certificate. This also covers listening
  sockets wrapped once, whose ``accept()`` keeps using the front context.
- Client side: ``wrap_socket`` / ``wrap_bio`` (what http.client, urllib3, asyncio and anyio
  call) delegate to the current snapshot, so each new connection presents the current SVID.

How the SPIFFE check runs without a hook in the stdlib: the contexts set
``sslsocket_class`` / ``sslobject_class`` to subclasses whose ``do_handshake`` runs
``verify_peer`` as soon as OpenSSL has finished. Everything that drives a handshake
through those methods (socket servers, asyncio, http.client, urllib3, anyio) therefore
refuses an unverified or unauthorized peer before any application data is exchanged.

Certificates and keys reach OpenSSL through an anonymous in-memory file (``memfd_create``;
on platforms without it, a 0600 temp file in a 0700 directory, deleted right after
loading), and the key inside it is encrypted with a one-time random password, because the
``ssl`` module can only load a key from a path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives import serialization

from spire_fabric.identity import (
    SpiffeId,
    X509Bundle,
    X509BundleSource,
    X509Svid,
    X509SvidSource,
    x509_bundle_source_of,
    x509_svid_source_of,
)

from ._authorize import Authorizer
from ._peer import PEER_ID_ATTRIBUTE, TlsConnection, VerifiedChainCache
from ._sources import all_x509_bundles

if TYPE_CHECKING:
    import spiffe

__all__ = [
    "SpiffeClientContext",
    "SpiffeServerContext",
    "mtls_client_context",
    "mtls_server_context",
    "tls_client_context",
    "tls_server_context",
]

logger = logging.getLogger("spire_fabric.tls")

ClientCert = Literal["required", "optional"]

PeerCheck = Callable[[TlsConnection], SpiffeId | None]


@contextlib.contextmanager
def _anonymous_file(data: bytes) -> Iterator[str]:
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        fd = memfd_create("spire-fabric-svid", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    directory = tempfile.mkdtemp(prefix="spire-fabric-")  # mode 0700
    try:
        fd, path = tempfile.mkstemp(dir=directory)  # mode 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def load_svid(context: ssl.SSLContext, svid: X509Svid) -> None:
    """Load an SVID's chain and key into a fresh context, with the key never in the clear."""
    password = secrets.token_urlsafe(32).encode()
    key_pem = svid.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with _anonymous_file(svid.cert_chain_pem() + key_pem) as path:
        context.load_cert_chain(path, password=password)


def _checked_classes(check: PeerCheck) -> tuple[type[ssl.SSLSocket], type[ssl.SSLObject]]:
    # ``check`` may return None (client certificate optional and none sent): the attribute
    # is then None and ``peer_spiffe_id`` raises LookupError, never a made-up identity.
    class CheckedSSLSocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            setattr(self, PEER_ID_ATTRIBUTE, check(self))

    class CheckedSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            setattr(self, PEER_ID_ATTRIBUTE, check(self))

    return CheckedSSLSocket, CheckedSSLObject


def _make_check(
    bundle_source: X509BundleSource, authorizer: Authorizer, *, optional: bool = False
) -> PeerCheck:
    cache = VerifiedChainCache(bundle_source)

    def check(conn: TlsConnection) -> SpiffeId | None:
        # A client that sent no certificate is let through only when it is optional; one
        # that sent a certificate is checked exactly as in mutual TLS, never ignored.
        if optional and conn.getpeercert(binary_form=True) is None:
            return None
        return cache.verify_peer(conn, authorizer)

    return check


def _configure(
    context: ssl.SSLContext,
    *,
    verify_peer_cert: bool,
    server_side: bool,
    peer_cert_optional: bool = False,
) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not server_side:
        # SPIFFE peers are named by URI SAN, checked by verify_peer; DNS names are irrelevant.
        context.check_hostname = False
    if not verify_peer_cert:
        context.verify_mode = ssl.CERT_NONE
    else:
        context.verify_mode = ssl.CERT_OPTIONAL if peer_cert_optional else ssl.CERT_REQUIRED
    # Go treats every bundle certificate as a trust anchor, self-signed or not.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if server_side:
        # A TLS 1.3 ticket resumption carries no peer chain to re-verify, and would keep
        # presenting a rotated-out identity; full handshakes only.
        context.num_tickets = 0
        context.options |= ssl.OP_NO_TICKET
    return context


def _build_snapshot(
    *,
    server_side: bool,
    svid: X509Svid | None,
    bundles: tuple[X509Bundle, ...],
    verify_peer_cert: bool,
    alpn: tuple[str, ...] | None,
    check: PeerCheck | None,
    peer_cert_optional: bool = False,
) -> ssl.SSLContext:
    protocol = ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT
    context = _configure(
        ssl.SSLContext(protocol),
        verify_peer_cert=verify_peer_cert,
        server_side=server_side,
        peer_cert_optional=peer_cert_optional,
    )
    if verify_peer_cert:
        pem = b"".join(b.to_pem() for b in bundles)
        if pem:
            context.load_verify_locations(cadata=pem.decode("ascii"))
    if svid is not None:
        load_svid(context, svid)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    if check is not None:
        context.sslsocket_class, context.sslobject_class = _checked_classes(check)
    return context


def _same(a: Any, b: Any) -> bool:
    return a is b or a == b


@dataclass(frozen=True)
class _Snapshot:
    svid: X509Svid | None
    bundles: tuple[X509Bundle, ...]
    alpn: tuple[str, ...] | None
    context: ssl.SSLContext

    def identical(self, svid: object, bundles: tuple[X509Bundle, ...], alpn: object) -> bool:
        return (
            self.svid is svid
            and self.alpn == alpn
            and len(self.bundles) == len(bundles)
            and all(x is y for x, y in zip(self.bundles, bundles, strict=True))
        )

    def equal(self, svid: object, bundles: tuple[X509Bundle, ...], alpn: object) -> bool:
        return _same(self.svid, svid) and self.alpn == alpn and self.bundles == bundles


class _SnapshotCache:
    """The context for the current (SVID, bundles, ALPN); rebuilt only when one changes.

    The common case (nothing rotated) costs two source calls and identity comparisons.
    """

    def __init__(
        self,
        build: Callable[[X509Svid | None, tuple[X509Bundle, ...], tuple[str, ...] | None], Any],
        svid_source: X509SvidSource | None,
        bundle_source: X509BundleSource | None,
    ) -> None:
        self._build = build
        self._svid_source = svid_source
        self._bundle_source = bundle_source
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self.builds = 0

    def current(self, alpn: tuple[str, ...] | None) -> ssl.SSLContext:
        svid = self._svid_source.get_x509_svid() if self._svid_source is not None else None
        bundles = all_x509_bundles(self._bundle_source) if self._bundle_source is not None else ()
        snapshot = self._snapshot
        if snapshot is not None and snapshot.identical(svid, bundles, alpn):
            return snapshot.context
        with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and snapshot.equal(svid, bundles, alpn):
                # Equal content in new objects: keep the context, remember the new objects
                # so the next lookup takes the identity fast path again.
                context = snapshot.context
            else:
                context = self._build(svid, bundles, alpn)
                self.builds += 1
            self._snapshot = _Snapshot(svid, bundles, alpn, context)
            return context


class SpiffeServerContext(ssl.SSLContext):
    """The fixed front context a server framework holds; see the module docstring.

    Do not load certificates into it: each handshake is moved onto the context of the
    current SVID. ``set_alpn_protocols`` is remembered and applied to those contexts.
    ``client_cert="optional"`` asks for a client certificate without requiring one (see
    ``mtls_server_context``).
    """

    _cache: _SnapshotCache
    _alpn: tuple[str, ...] | None

    def __new__(cls, *args: Any, **kwargs: Any) -> SpiffeServerContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)

    def __init__(
        self,
        svid_source: X509SvidSource | spiffe.X509Source | spiffe.X509Svid,
        bundle_source: X509BundleSource
        | spiffe.X509Source
        | spiffe.X509BundleSet
        | spiffe.X509Bundle
        | None,
        authorizer: Authorizer | None,
        client_cert: ClientCert = "required",
    ) -> None:
        svid_source = x509_svid_source_of(svid_source)
        if bundle_source is not None:
            bundle_source = x509_bundle_source_of(bundle_source)
        if client_cert not in ("required", "optional"):
            raise ValueError(
                f"tls: client_cert must be 'required' or 'optional', not {client_cert!r}"
            )
        mutual = bundle_source is not None and authorizer is not None
        optional = client_cert == "optional"
        check = (
            _make_check(bundle_source, authorizer, optional=optional)  # type: ignore[arg-type]
            if mutual
            else None
        )

        def build(
            svid: X509Svid | None, bundles: tuple[X509Bundle, ...], alpn: tuple[str, ...] | None
        ) -> ssl.SSLContext:
            return _build_snapshot(
                server_side=True,
                svid=svid,
                bundles=bundles,
                verify_peer_cert=mutual,
                alpn=alpn,
                check=None,
                peer_cert_optional=optional,
            )

        self._alpn = None
        self._cache = _SnapshotCache(build, svid_source, bundle_source if mutual else None)
        _configure(self, verify_peer_cert=mutual, server_side=True, peer_cert_optional=optional)
        if check is not None:
            self.sslsocket_class, self.sslobject_class = _checked_classes(check)
        self.sni_callback = self._on_client_hello
        # Fail at construction, not on the first client, if the sources are unusable.
        self._cache.current(self._alpn)

    def _on_client_hello(
        self, conn: TlsConnection, server_name: str | None, context: ssl.SSLContext
    ) -> int | None:
        try:
            conn.context = self._cache.current(self._alpn)
        except Exception:
            logger.exception("tls: cannot build the TLS context for the current SVID")
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None

    def set_alpn_protocols(self, alpn_protocols: Iterable[str]) -> None:
        """Offer these ALPN protocols (frameworks call this); every snapshot context gets them."""
        protocols = tuple(alpn_protocols)
        super().set_alpn_protocols(list(protocols))
        self._alpn = protocols or None

    def current_context(self) -> ssl.SSLContext:
        """The immutable context new handshakes use right now (for inspection and tests)."""
        return self._cache.current(self._alpn)

    @property
    def builds(self) -> int:
        """How many snapshot contexts were built: one, plus one per rotation."""
        return self._cache.builds


class SpiffeClientContext(ssl.SSLContext):
    """A client context whose every new connection uses the current SVID and bundles.

    Pass it wherever an ``ssl.SSLContext`` is accepted (http.client, urllib, urllib3,
    asyncio, httpx ``verify=``); the SPIFFE check runs inside the handshake.
    """

    _cache: _SnapshotCache
    _alpn: tuple[str, ...] | None

    def __new__(cls, *args: Any, **kwargs: Any) -> SpiffeClientContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(
        self,
        svid_source: X509SvidSource | spiffe.X509Source | spiffe.X509Svid | None,
        bundle_source: X509BundleSource
        | spiffe.X509Source
        | spiffe.X509BundleSet
        | spiffe.X509Bundle,
        authorizer: Authorizer,
    ) -> None:
        if svid_source is not None:
            svid_source = x509_svid_source_of(svid_source)
        bundle_source = x509_bundle_source_of(bundle_source)
        check = _make_check(bundle_source, authorizer)

        def build(
            svid: X509Svid | None, bundles: tuple[X509Bundle, ...], alpn: tuple[str, ...] | None
        ) -> ssl.SSLContext:
            return _build_snapshot(
                server_side=False,
                svid=svid,
                bundles=bundles,
                verify_peer_cert=True,
                alpn=alpn,
                check=check,
            )

        self._alpn = None
        self._cache = _SnapshotCache(build, svid_source, bundle_source)
        _configure(self, verify_peer_cert=True, server_side=False)
        self.sslsocket_class, self.sslobject_class = _checked_classes(check)
        self._cache.current(self._alpn)

    def wrap_socket(
        self,
        sock: Any,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        """Wrap ``sock`` with the current snapshot context (client side only): the SPIFFE check
        runs inside its handshake.
        """
        if server_side:
            raise ValueError("tls: a SpiffeClientContext cannot wrap server-side sockets")
        return self._cache.current(self._alpn).wrap_socket(
            sock,
            server_side=False,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=server_hostname,
            session=session,
        )

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        """``wrap_socket`` for memory BIOs (asyncio, anyio): the current snapshot, client side."""
        if server_side:
            raise ValueError("tls: a SpiffeClientContext cannot wrap server-side connections")
        return self._cache.current(self._alpn).wrap_bio(
            incoming, outgoing, server_side=False, server_hostname=server_hostname, session=session
        )

    def set_alpn_protocols(self, alpn_protocols: Iterable[str]) -> None:
        """Offer these ALPN protocols (frameworks call this); every snapshot context gets them."""
        protocols = tuple(alpn_protocols)
        super().set_alpn_protocols(list(protocols))
        self._alpn = protocols or None

    def current_context(self) -> ssl.SSLContext:
        """The immutable context new connections use right now (for inspection and tests)."""
        return self._cache.current(self._alpn)

    @property
    def builds(self) -> int:
        """How many snapshot contexts were built: one, plus one per rotation."""
        return self._cache.builds


def mtls_server_context(
    svid_source: X509SvidSource | spiffe.X509Source | spiffe.X509Svid,
    bundle_source: X509BundleSource | spiffe.X509Source | spiffe.X509BundleSet | spiffe.X509Bundle,
    authorizer: Authorizer,
    *,
    client_cert: ClientCert = "required",
) -> SpiffeServerContext:
    """Server side of mutual TLS: present the current SVID, require and check a client SVID.

    The client chain is verified against the bundle of the client ID's own trust domain,
    then ``authorizer`` decides, inside the handshake of every connection. py-spiffe's
    ``X509Source`` (and its SVIDs, bundles and bundle sets) are accepted as they are.

    ``client_cert="optional"`` serves SPIFFE workloads and clients without an SVID on one
    listener (an edge gateway): a client certificate, when sent, is checked exactly as above
    and a bad one fails the handshake; a client that sends none is admitted with no peer ID
    (``peer_spiffe_id`` raises LookupError) and the application must authenticate it some
    other way, e.g. by an ``Authorization`` header.
    """
    return SpiffeServerContext(svid_source, bundle_source, authorizer, client_cert)


def tls_server_context(
    svid_source: X509SvidSource | spiffe.X509Source | spiffe.X509Svid,
) -> SpiffeServerContext:
    """Plain TLS with the current SVID, for clients without an SVID (browsers, web PKI tools).

    Clients authenticate the server by its SPIFFE ID with ``tls_client_context``.
    """
    return SpiffeServerContext(svid_source, None, None)


def mtls_client_context(
    svid_source: X509SvidSource | spiffe.X509Source | spiffe.X509Svid,
    bundle_source: X509BundleSource | spiffe.X509Source | spiffe.X509BundleSet | spiffe.X509Bundle,
    authorizer: Authorizer,
) -> SpiffeClientContext:
    """Client side of mutual TLS: present the current SVID, verify and authorize the server."""
    return SpiffeClientContext(svid_source, bundle_source, authorizer)


def tls_client_context(
    bundle_source: X509BundleSource | spiffe.X509Source | spiffe.X509BundleSet | spiffe.X509Bundle,
    authorizer: Authorizer,
) -> SpiffeClientContext:
    """A client without an SVID that still authenticates the server's SPIFFE ID.

    What a bundle endpoint client (profile https_spiffe) needs.
    """
    return SpiffeClientContext(None, bundle_source, authorizer)
