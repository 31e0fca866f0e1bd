"""The authoritative per-connection check: the peer chain, verified per trust domain.

OpenSSL's in-handshake verification runs against one pool holding every trusted bundle,
so a CA of trust domain B would be accepted for an ID of trust domain A. That pool check
only decides whether the handshake can finish; this module decides whether the peer is
who it says it is, with identity's ``verify_x509_svid`` (roots of the peer ID's OWN
trust domain only) followed by the authorizer.
"""

from __future__ import annotations

import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cryptography import x509

from spire_fabric.identity import (
    SpiffeId,
    X509Bundle,
    X509BundleSource,
    X509SvidError,
    verify_x509_svid,
)

from ._authorize import Authorizer
from ._errors import AuthorizationError, PeerRejectedError

if TYPE_CHECKING:
    import spiffe

__all__ = ["peer_chain", "peer_spiffe_id", "verify_peer"]

TlsConnection = ssl.SSLSocket | ssl.SSLObject

# Attribute our checked SSLSocket/SSLObject classes set once the check has passed.
PEER_ID_ATTRIBUTE = "spiffe_peer_id"
_DER = 2  # _ssl.ENCODING_DER; the constant is not exported by the ssl module


def _chain_getter(conn: TlsConnection) -> Any:
    # Python >= 3.13 has a public SSLSocket/SSLObject.get_unverified_chain() returning DER
    # bytes; 3.10-3.12 have the same method only on the private _sslobj, returning
    # _ssl.Certificate objects. This is the one place that knows about that.
    getter = getattr(conn, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(conn, "_sslobj", None), "get_unverified_chain", None)
    if getter is None:
        raise RuntimeError(
            f"tls: {type(conn).__name__} exposes no peer certificate chain "
            "(needs CPython >= 3.10 built with OpenSSL)"
        )
    return getter


def _raw_chain(conn: TlsConnection) -> tuple[bytes, ...]:
    raw = _chain_getter(conn)()
    if not raw:
        raise PeerRejectedError("tls: peer presented no certificate")
    return tuple(c if isinstance(c, bytes) else c.public_bytes(_DER) for c in raw)


def peer_chain(conn: TlsConnection) -> list[x509.Certificate]:
    """The certificates the peer sent, leaf first, as ``cryptography`` objects.

    Works for ``ssl.SSLSocket`` and ``ssl.SSLObject`` (asyncio's
    ``transport.get_extra_info("ssl_object")``) after the handshake. Raises
    PeerRejectedError if the peer sent no certificate.
    """
    return [x509.load_der_x509_certificate(der) for der in _raw_chain(conn)]


def verify_peer(
    conn: TlsConnection,
    bundle_source: X509BundleSource | spiffe.X509Source | spiffe.X509BundleSet,
    authorizer: Authorizer,
) -> SpiffeId:
    """Verify the peer of a finished handshake and return its SPIFFE ID.

    Contexts from this package already run this inside the handshake; call it yourself
    only where a framework builds connections some other way. Raises PeerRejectedError.
    """
    return _authorize(*_verify(_raw_chain(conn), bundle_source)[:2], authorizer)


def _verify(
    raw: tuple[bytes, ...],
    bundle_source: X509BundleSource | spiffe.X509Source | spiffe.X509BundleSet,
) -> tuple[SpiffeId, list[x509.Certificate]]:
    # The DER goes to the verifier as is: it parses it and turns any malformed certificate
    # into an X509SvidError, where cryptography would raise ValueError or InvalidVersion.
    try:
        return verify_x509_svid(list(raw), bundle_source)
    except X509SvidError as e:
        raise PeerRejectedError(f"tls: peer certificate rejected: {e}") from e


def _authorize(
    spiffe_id: SpiffeId, verified: list[x509.Certificate], authorizer: Authorizer
) -> SpiffeId:
    try:
        authorizer(spiffe_id, verified)
    except AuthorizationError as e:
        raise PeerRejectedError(
            f"tls: peer {spiffe_id} is not authorized: {e}", peer_id=spiffe_id
        ) from e
    return spiffe_id


def peer_spiffe_id(conn: TlsConnection) -> SpiffeId:
    """The peer ID our checked connection verified during its handshake.

    Raises LookupError if ``conn`` was not made by a context of this package or its
    handshake has not finished, so a caller can never mistake "unchecked" for "checked".
    """
    peer = getattr(conn, PEER_ID_ATTRIBUTE, None)
    if not isinstance(peer, SpiffeId):
        raise LookupError(
            f"tls: {type(conn).__name__} has no verified SPIFFE peer: it was not created by "
            "an spire_fabric.tls context, or its handshake has not completed"
        )
    return peer


@dataclass(frozen=True)
class _Verified:
    spiffe_id: SpiffeId
    chain: list[x509.Certificate]
    bundle: X509Bundle
    valid_from: datetime
    valid_until: datetime


class VerifiedChainCache:
    """Remembers chains that verified, so a returning peer skips the chain check.

    A result depends only on the chain bytes, the bundle of the peer's trust domain and
    the time. So an entry is reused only while the source still returns that same bundle
    (a rotated or removed bundle misses) and while every certificate of the verified chain
    is within its validity period. The authorizer always runs. Bounded, least recently
    used first out.
    """

    def __init__(self, bundle_source: X509BundleSource, max_entries: int = 1024) -> None:
        self._bundle_source = bundle_source
        self._max = max_entries
        self._entries: OrderedDict[tuple[bytes, ...], _Verified] = OrderedDict()
        self._lock = threading.Lock()

    def verify_peer(self, conn: TlsConnection, authorizer: Authorizer) -> SpiffeId:
        raw = _raw_chain(conn)
        with self._lock:
            hit = self._entries.get(raw)
            if hit is not None:
                self._entries.move_to_end(raw)
        if hit is not None and self._still_valid(hit):
            return _authorize(hit.spiffe_id, list(hit.chain), authorizer)
        spiffe_id, verified = _verify(raw, self._bundle_source)
        bundle = self._bundle_source.get_x509_bundle_for_trust_domain(spiffe_id.trust_domain)
        if bundle is not None:
            entry = _Verified(
                spiffe_id,
                verified,
                bundle,
                max(c.not_valid_before_utc for c in verified),
                min(c.not_valid_after_utc for c in verified),
            )
            with self._lock:
                self._entries[raw] = entry
                while len(self._entries) > self._max:
                    self._entries.popitem(last=False)
        return _authorize(spiffe_id, verified, authorizer)

    def _still_valid(self, hit: _Verified) -> bool:
        now = datetime.now(timezone.utc)
        if not hit.valid_from <= now <= hit.valid_until:
            return False
        current = self._bundle_source.get_x509_bundle_for_trust_domain(hit.spiffe_id.trust_domain)
        return current is hit.bundle or current == hit.bundle
