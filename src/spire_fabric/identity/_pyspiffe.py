"""py-spiffe interop: users who already hold py-spiffe objects plug them in unchanged.

Why a bridge and not py-spiffe's types throughout: our values are stricter (go-spiffe's
ID rules, py-spiffe lowercases), immutable, and carry what py-spiffe lacks (SPIFFE bundle
JSON, per-trust-domain chain checks through OpenSSL). So py-spiffe objects are converted
at the edge, once per rotation, and everything inside works on ours.

- :func:`from_pyspiffe` turns a py-spiffe ID, trust domain, SVID, bundle or bundle set into
  ours, and wraps a py-spiffe ``X509Source`` / ``JwtSource`` (or a bundle set) in a source
  that our TLS contexts and JWT validation take.
- :func:`to_pyspiffe` goes the other way for IDs, SVIDs, bundles and bundle sets.
- The TLS contexts, :func:`verify_x509_svid` and :func:`parse_and_validate_jwt_svid`
  accept py-spiffe sources directly: they wrap them with the functions below.

Wrapped sources read the py-spiffe source on every call (so its rotation is seen at
once) and convert only when py-spiffe hands out a different object, which it does only
when the Workload API pushed an update.
"""

from __future__ import annotations

import json
import threading
import weakref
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from ._bundle_set import BundleSet
from ._jwk import b64url_decode
from ._jwt_bundle import JwtBundle
from ._jwt_svid import JwtSvid
from ._sources import JwtBundleSource, X509BundleSource, X509SvidSource, is_pyspiffe
from ._spiffe_bundle import SpiffeBundle
from ._spiffe_id import SpiffeId, TrustDomain
from ._x509_bundle import X509Bundle
from ._x509_svid import X509Svid

if TYPE_CHECKING:
    import spiffe

__all__ = [
    "PySpiffeJwtSource",
    "PySpiffeX509Source",
    "from_pyspiffe",
    "is_pyspiffe",
    "jwt_bundle_source_of",
    "to_pyspiffe",
    "x509_bundle_source_of",
    "x509_svid_source_of",
]

P = TypeVar("P")
T = TypeVar("T")
W = TypeVar("W", "PySpiffeX509Source", "PySpiffeJwtSource")


class _Converted(Generic[P, T]):
    """The conversion of the last py-spiffe object seen, kept while py-spiffe keeps it.

    Holding the py-spiffe object (not its id) makes the ``is`` test safe: it cannot be
    collected and its id reused while it is cached here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[P, T] | None = None

    def get(self, original: P, convert: Any) -> T:
        last = self._last
        if last is not None and last[0] is original:
            return last[1]
        converted: T = convert(original)
        with self._lock:
            self._last = (original, converted)
        return converted


class PySpiffeX509Source:
    """A py-spiffe ``X509Source`` or ``X509BundleSet`` as our X.509 SVID and bundle source.

    Pass it wherever ``spire_fabric.tls`` takes an ``X509SvidSource`` or an
    ``X509BundleSource`` (or pass the py-spiffe object itself: the contexts wrap it with
    this). The SVID is py-spiffe's default SVID; the bundles are its whole bundle set,
    so federated trust domains work as they do with our own ``X509Source``.
    """

    def __init__(self, source: spiffe.X509Source | spiffe.X509BundleSet) -> None:
        self._source = source
        self._svid: _Converted[Any, X509Svid] = _Converted()
        self._bundles: dict[str, _Converted[Any, X509Bundle]] = {}
        self._lock = threading.Lock()

    @property
    def pyspiffe_source(self) -> spiffe.X509Source | spiffe.X509BundleSet:
        """The py-spiffe object this wraps."""
        return self._source

    def get_x509_svid(self) -> X509Svid:
        """py-spiffe's current default SVID, converted once per rotation."""
        get_context = getattr(self._source, "get_x509_context", None)
        if get_context is None:
            raise TypeError(
                f"identity: a py-spiffe {type(self._source).__name__} holds no SVID; "
                "pass an X509Source as the SVID source"
            )
        return self._svid.get(get_context().default_svid, X509Svid.from_spiffe)

    def _convert_bundle(self, bundle: Any) -> X509Bundle:
        name = bundle.trust_domain.name
        with self._lock:
            cache = self._bundles.setdefault(name, _Converted())
        return cache.get(bundle, X509Bundle.from_spiffe)

    def get_x509_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> X509Bundle | None:
        """The bundle py-spiffe holds for ``trust_domain``, or None."""
        bundle = self._source.get_bundle_for_trust_domain(trust_domain.to_spiffe())
        return None if bundle is None else self._convert_bundle(bundle)

    def get_bundle_set(self) -> BundleSet[X509Bundle]:
        """Every bundle py-spiffe holds now, as a snapshot (TLS needs them all at once)."""
        get_context = getattr(self._source, "get_x509_context", None)
        if get_context is not None:
            bundles = get_context().x509_bundle_set.bundles
        else:
            bundles = self._source.bundles
        return BundleSet(self._convert_bundle(b) for b in bundles)


class PySpiffeJwtSource:
    """A py-spiffe ``JwtSource`` or ``JwtBundleSet`` as our JWT bundle source.

    ``parse_and_validate_jwt_svid(token, PySpiffeJwtSource(source), audience)`` validates
    with the bundles py-spiffe keeps current (passing the py-spiffe object itself does the
    same). ``fetch_jwt_svid`` fetches through py-spiffe and returns our ``JwtSvid``.
    """

    def __init__(self, source: spiffe.JwtSource | spiffe.JwtBundleSet) -> None:
        self._source = source
        self._bundles: dict[str, _Converted[Any, JwtBundle]] = {}
        self._lock = threading.Lock()

    @property
    def pyspiffe_source(self) -> spiffe.JwtSource | spiffe.JwtBundleSet:
        """The py-spiffe object this wraps."""
        return self._source

    def get_jwt_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> JwtBundle | None:
        """The JWT bundle py-spiffe holds for ``trust_domain``, or None."""
        bundle = self._source.get_bundle_for_trust_domain(trust_domain.to_spiffe())
        if bundle is None:
            return None
        with self._lock:
            cache = self._bundles.setdefault(trust_domain.name, _Converted())
        return cache.get(bundle, JwtBundle.from_spiffe)

    def fetch_jwt_svid(self, audience: str, *extra_audience: str) -> JwtSvid:
        """A JWT-SVID for the audience(s), fetched by the py-spiffe source, as ours."""
        fetch = getattr(self._source, "fetch_svid", None)
        if fetch is None:
            raise TypeError("identity: a py-spiffe JwtBundleSet cannot fetch SVIDs")
        svid = fetch({audience, *extra_audience})
        return jwt_svid_from_pyspiffe(svid)


def jwt_svid_from_pyspiffe(svid: spiffe.JwtSvid) -> JwtSvid:
    """Our JwtSvid for a py-spiffe one: same token, ID, audience, expiry and claims.

    No signature check: py-spiffe already parsed (and, if it fetched or validated it,
    verified) the token; converting adds no trust and takes none away.
    """
    return JwtSvid(
        token=svid.token,
        spiffe_id=SpiffeId.from_spiffe(svid.spiffe_id),
        audience=tuple(sorted(svid.audience)),
        expiry=datetime.fromtimestamp(svid.expiry, tz=timezone.utc),
        claims=_claims(svid.token),
    )


def _claims(token: str) -> dict[str, Any]:
    # py-spiffe keeps the claims private; they are the token's payload, so read them there.
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(b64url_decode(payload))
    return claims


@overload
def from_pyspiffe(value: spiffe.SpiffeId) -> SpiffeId: ...
@overload
def from_pyspiffe(value: spiffe.TrustDomain) -> TrustDomain: ...
@overload
def from_pyspiffe(value: spiffe.X509Svid) -> X509Svid: ...
@overload
def from_pyspiffe(value: spiffe.JwtSvid) -> JwtSvid: ...
@overload
def from_pyspiffe(value: spiffe.X509Bundle) -> X509Bundle: ...
@overload
def from_pyspiffe(value: spiffe.JwtBundle) -> JwtBundle: ...
@overload
def from_pyspiffe(value: spiffe.X509BundleSet) -> BundleSet[X509Bundle]: ...
@overload
def from_pyspiffe(value: spiffe.JwtBundleSet) -> BundleSet[JwtBundle]: ...
@overload
def from_pyspiffe(value: spiffe.X509Source) -> PySpiffeX509Source: ...
@overload
def from_pyspiffe(value: spiffe.JwtSource) -> PySpiffeJwtSource: ...
def from_pyspiffe(value: object) -> object:
    """Our equivalent of a py-spiffe value; a py-spiffe source becomes a wrapping source.

    IDs are re-validated with our (go-spiffe's) rules, so an ID py-spiffe accepted but
    SPIFFE forbids raises ``SpiffeIdError`` here rather than failing later.
    """
    import spiffe

    if isinstance(value, spiffe.SpiffeId):
        return SpiffeId.from_spiffe(value)
    if isinstance(value, spiffe.TrustDomain):
        return TrustDomain.from_spiffe(value)
    if isinstance(value, spiffe.X509Svid):
        return X509Svid.from_spiffe(value)
    if isinstance(value, spiffe.JwtSvid):
        return jwt_svid_from_pyspiffe(value)
    if isinstance(value, spiffe.X509Bundle):
        return X509Bundle.from_spiffe(value)
    if isinstance(value, spiffe.JwtBundle):
        return JwtBundle.from_spiffe(value)
    if isinstance(value, spiffe.X509BundleSet):
        return BundleSet(X509Bundle.from_spiffe(b) for b in value.bundles)
    if isinstance(value, spiffe.JwtBundleSet):
        return BundleSet(JwtBundle.from_spiffe(b) for b in value.bundles)
    if isinstance(value, spiffe.X509Source):
        return PySpiffeX509Source(value)
    if isinstance(value, spiffe.JwtSource):
        return PySpiffeJwtSource(value)
    raise TypeError(f"identity: no spire_fabric equivalent for {type(value).__qualname__}")


@overload
def to_pyspiffe(value: SpiffeId) -> spiffe.SpiffeId: ...
@overload
def to_pyspiffe(value: TrustDomain) -> spiffe.TrustDomain: ...
@overload
def to_pyspiffe(value: X509Svid) -> spiffe.X509Svid: ...
@overload
def to_pyspiffe(value: JwtSvid) -> spiffe.JwtSvid: ...
@overload
def to_pyspiffe(value: X509Bundle) -> spiffe.X509Bundle: ...
@overload
def to_pyspiffe(value: JwtBundle) -> spiffe.JwtBundle: ...
@overload
def to_pyspiffe(value: BundleSet[Any], *, kind: Literal["x509"] = ...) -> spiffe.X509BundleSet: ...
@overload
def to_pyspiffe(value: BundleSet[Any], *, kind: Literal["jwt"]) -> spiffe.JwtBundleSet: ...
def to_pyspiffe(value: object, *, kind: Literal["x509", "jwt"] = "x509") -> object:
    """The py-spiffe equivalent of one of our IDs, SVIDs, bundles or bundle sets.

    A ``BundleSet`` becomes an ``X509BundleSet`` (``kind="x509"``, the default) or a
    ``JwtBundleSet`` (``kind="jwt"``); a set of SpiffeBundles gives either half.
    """
    import spiffe

    if isinstance(value, (SpiffeId, TrustDomain, X509Svid, JwtSvid, X509Bundle, JwtBundle)):
        return value.to_spiffe()
    if isinstance(value, BundleSet):
        if kind == "jwt":
            jwt = [_jwt_half(b) for b in value]
            return spiffe.JwtBundleSet({b.trust_domain: b for b in jwt if b is not None})
        x509 = [_x509_half(b) for b in value]
        return spiffe.X509BundleSet({b.trust_domain: b for b in x509 if b is not None})
    raise TypeError(f"identity: no py-spiffe equivalent for {type(value).__qualname__}")


def _x509_half(bundle: object) -> spiffe.X509Bundle | None:
    if isinstance(bundle, SpiffeBundle):
        bundle = bundle.x509_bundle()
    return bundle.to_spiffe() if isinstance(bundle, X509Bundle) else None


def _jwt_half(bundle: object) -> spiffe.JwtBundle | None:
    if isinstance(bundle, SpiffeBundle):
        bundle = bundle.jwt_bundle()
    return bundle.to_spiffe() if isinstance(bundle, JwtBundle) else None


# What the TLS contexts and verifiers call on whatever source they are given: ours pass
# through untouched (one cheap type check), py-spiffe's are wrapped. A wrapper is kept per
# py-spiffe source, so passing the same source on every call converts once per rotation.
_WRAPPERS: weakref.WeakKeyDictionary[object, object] = weakref.WeakKeyDictionary()
_WRAPPERS_LOCK = threading.Lock()


def _wrapper(source: Any, make: type[W]) -> W:
    with _WRAPPERS_LOCK:
        wrapper = _WRAPPERS.get(source)
        if not isinstance(wrapper, make):
            wrapper = make(source)
            _WRAPPERS[source] = wrapper
        return wrapper


def x509_svid_source_of(source: X509SvidSource | Any) -> X509SvidSource:
    """``source`` as an X509SvidSource: a py-spiffe X509Source (or SVID) is adapted."""
    if not is_pyspiffe(source):
        return source
    import spiffe

    if isinstance(source, spiffe.X509Svid):
        return X509Svid.from_spiffe(source)
    if isinstance(source, spiffe.X509Source):
        return _wrapper(source, PySpiffeX509Source)
    raise TypeError(f"identity: a py-spiffe {type(source).__qualname__} is no X.509 SVID source")


def x509_bundle_source_of(source: X509BundleSource | Any) -> X509BundleSource:
    """``source`` as an X509BundleSource: py-spiffe sources, sets and bundles are adapted."""
    if not is_pyspiffe(source):
        return source
    import spiffe

    if isinstance(source, spiffe.X509Bundle):
        return X509Bundle.from_spiffe(source)
    if isinstance(source, (spiffe.X509Source, spiffe.X509BundleSet)):
        return _wrapper(source, PySpiffeX509Source)
    raise TypeError(f"identity: a py-spiffe {type(source).__qualname__} is no X.509 bundle source")


def jwt_bundle_source_of(source: JwtBundleSource | Any) -> JwtBundleSource:
    """``source`` as a JwtBundleSource: py-spiffe sources, sets and bundles are adapted."""
    if not is_pyspiffe(source):
        return source
    import spiffe

    if isinstance(source, spiffe.JwtBundle):
        return JwtBundle.from_spiffe(source)
    if isinstance(source, (spiffe.JwtSource, spiffe.JwtBundleSet)):
        return _wrapper(source, PySpiffeJwtSource)
    raise TypeError(f"identity: a py-spiffe {type(source).__qualname__} is no JWT bundle source")
