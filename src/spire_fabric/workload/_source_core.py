"""What sync and async sources share: the snapshot, health, listeners, and the getters.

No I/O here. A source's state is one immutable snapshot object, replaced by a single
assignment under a lock, so a reader never sees an SVID from one update with bundles from
another, and ``get_x509_svid()`` returns the same object until the SVID really changes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from spire_fabric.identity import (
    BundleSet,
    JwtBundle,
    TrustDomain,
    X509Bundle,
    X509Svid,
)

from ._base import logger
from ._convert import X509Context
from ._endpoint import WorkloadEndpoint
from ._errors import (
    NoIdentityIssuedError,
    NoMatchingSvidError,
    SourceNotReadyError,
    WorkloadApiClosedError,
    WorkloadApiError,
)
from ._pickers import X509SvidPicker

C = TypeVar("C")
E = TypeVar("E")
S = TypeVar("S")
Listener = Callable[[], None]

DEFAULT_FIRST_UPDATE_TIMEOUT = 15.0


class SourceState(Generic[S]):
    """Snapshot, per-stream health and listeners of one source.

    ``streams`` names the Workload API streams feeding it (BundleSource has two); the
    source is ready once each delivered once, and healthy while none is broken.
    """

    def __init__(self, kind: str, endpoint: str, streams: Iterable[str]) -> None:
        self.kind = kind
        self.endpoint = endpoint
        self.cond = threading.Condition()
        self.snapshot: S | None = None
        self.generation = 0
        self.last_error: WorkloadApiError | None = None
        self.closed = False
        self._health = dict.fromkeys(streams, False)
        self._delivered: set[str] = set()
        self._listeners: list[Listener] = []

    @property
    def healthy(self) -> bool:
        return not self.closed and all(self._health.values())

    @property
    def ready(self) -> bool:
        return self._delivered == set(self._health)

    def current(self) -> S:
        snapshot = self.snapshot
        if self.closed:
            raise WorkloadApiClosedError(f"{self.kind} is closed", endpoint=self.endpoint)
        if snapshot is None or not self.ready:
            raise SourceNotReadyError(
                f"{self.kind} has no update from {self.endpoint} yet", endpoint=self.endpoint
            )
        return snapshot

    def publish(self, stream: str, build: Callable[[S | None], tuple[S, bool]]) -> bool:
        """Replace the snapshot with ``build(previous)``; fire listeners if it changed."""
        with self.cond:
            if self.closed:
                return False
            snapshot, changed = build(self.snapshot)
            self.snapshot = snapshot
            self.generation += 1
            self._health[stream] = True
            self._delivered.add(stream)
            self.last_error = None
            listeners = list(self._listeners) if changed and self.ready else []
            self.cond.notify_all()
        for listener in listeners:
            try:
                listener()
            except Exception:
                logger.exception("%s listener %r raised", self.kind, listener)
        return changed

    def fail(self, stream: str, error: WorkloadApiError) -> None:
        with self.cond:
            self._health[stream] = False
            self.last_error = error
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def add_listener(self, listener: Listener) -> None:
        with self.cond:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Forget ``listener``; a no-op if it was not added."""
        with self.cond:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def not_ready(self, timeout: float) -> WorkloadApiError:
        """The error for a source that got no first update within ``timeout``."""
        return not_ready_error(self, timeout)

    def wait_ready(self, timeout: float) -> None:
        """Block until every stream delivered once; raise a clear error if none does."""
        with self.cond:
            self.cond.wait_for(lambda: self.ready or self.closed, timeout)
            if not self.ready:
                raise not_ready_error(self, timeout)

    def wait_next(self, timeout: float | None) -> bool:
        with self.cond:
            seen = self.generation
            return self.cond.wait_for(lambda: self.generation > seen or self.closed, timeout) and (
                not self.closed
            )


def not_ready_error(state: SourceState[Any], timeout: float) -> WorkloadApiError:
    if state.closed:
        return WorkloadApiClosedError(
            f"{state.kind} was closed before its first update", endpoint=state.endpoint
        )
    last = state.last_error
    message = f"{state.kind} got no update from the Workload API at {state.endpoint} within "
    message += f"{timeout:g}s"
    if last is not None:
        message += f"; last error: {last}"
    # Keep the specific class for the errors a user can act on, so they stay catchable.
    cls = type(last) if isinstance(last, (NoIdentityIssuedError, NoMatchingSvidError)) else None
    error = (cls or SourceNotReadyError)(
        message, endpoint=state.endpoint, code=last.code if last else None
    )
    error.__cause__ = last
    return error


def frozen_bundles(bundles: Iterable[X509Bundle | JwtBundle]) -> Mapping[TrustDomain, object]:
    return {b.trust_domain: b for b in bundles}


# -- X.509 --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class X509Snapshot:
    context: X509Context
    svid: X509Svid


def same_svid(a: X509Svid, b: X509Svid) -> bool:
    return a.cert_chain == b.cert_chain and a.hint == b.hint


def same_bundles(a: Mapping[TrustDomain, object], b: Mapping[TrustDomain, object]) -> bool:
    return a.keys() == b.keys() and all(a[td] == b[td] for td in a)


def x509_builder(
    context: X509Context, svid: X509Svid
) -> Callable[[X509Snapshot | None], tuple[X509Snapshot, bool]]:
    def build(previous: X509Snapshot | None) -> tuple[X509Snapshot, bool]:
        if previous is None:
            return X509Snapshot(context, svid), True
        # An update that repeats the SVID (e.g. only a federated bundle changed) keeps the
        # old SVID object: identity of get_x509_svid() changes exactly on rotation.
        keep_svid = same_svid(previous.svid, svid)
        keep_bundles = same_bundles(previous.context.bundles, context.bundles)
        same_all = len(previous.context.svids) == len(context.svids) and all(
            map(same_svid, previous.context.svids, context.svids)
        )
        if keep_svid and keep_bundles and same_all:
            return previous, False
        return X509Snapshot(context, previous.svid if keep_svid else svid), True

    return build


def pick(picker: X509SvidPicker, context: X509Context, kind: str) -> X509Svid:
    try:
        return picker(context.svids)
    except WorkloadApiError:
        raise
    except Exception as e:
        raise NoMatchingSvidError(f"{kind} picker {picker!r} failed: {e}") from e


class X509Getters:
    """The read side of X509Source and AsyncX509Source (the contract tls codes against)."""

    _x509: SourceState[X509Snapshot]

    @property
    def healthy(self) -> bool:
        """False while the Workload API stream is broken; True again after a fresh update."""
        return self._x509.healthy

    def get_x509_svid(self) -> X509Svid:
        """The picked X509-SVID of the latest update (the same object until it rotates)."""
        return self._x509.current().svid

    def get_x509_svids(self) -> tuple[X509Svid, ...]:
        return self._x509.current().context.svids

    def get_x509_context(self) -> X509Context:
        return self._x509.current().context

    def get_x509_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> X509Bundle | None:
        return self._x509.current().context.bundles.get(trust_domain)

    def get_bundle_set(self) -> BundleSet[X509Bundle]:
        """All X.509 bundles (own and federated), as a new BundleSet."""
        return self._x509.current().context.get_bundle_set()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener()`` (no arguments) after each update that changed anything."""
        self._x509.add_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._x509.remove_listener(listener)


# -- bundles ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BundlesSnapshot:
    x509: Mapping[TrustDomain, X509Bundle]
    jwt: Mapping[TrustDomain, JwtBundle]


def bundles_builder(
    x509: BundleSet[X509Bundle] | None = None, jwt: BundleSet[JwtBundle] | None = None
) -> Callable[[BundlesSnapshot | None], tuple[BundlesSnapshot, bool]]:
    def build(previous: BundlesSnapshot | None) -> tuple[BundlesSnapshot, bool]:
        old = previous or BundlesSnapshot({}, {})
        new = BundlesSnapshot(
            old.x509 if x509 is None else frozen_bundles(x509),  # type: ignore[arg-type]
            old.jwt if jwt is None else frozen_bundles(jwt),  # type: ignore[arg-type]
        )
        if (
            previous is not None
            and same_bundles(old.x509, new.x509)
            and same_bundles(old.jwt, new.jwt)
        ):
            return previous, False
        return new, True

    return build


class JwtBundleGetters:
    _bundles: SourceState[BundlesSnapshot]

    def get_jwt_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> JwtBundle | None:
        return self._bundles.current().jwt.get(trust_domain)

    def get_jwt_bundle_set(self) -> BundleSet[JwtBundle]:
        return BundleSet(self._bundles.current().jwt.values())

    @property
    def healthy(self) -> bool:
        """False while a Workload API stream is broken; True again after a fresh update."""
        return self._bundles.healthy

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener()`` (no arguments) after each update that changed a bundle."""
        self._bundles.add_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._bundles.remove_listener(listener)


class BundleGetters(JwtBundleGetters):
    def get_x509_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> X509Bundle | None:
        return self._bundles.current().x509.get(trust_domain)

    def get_x509_bundle_set(self) -> BundleSet[X509Bundle]:
        return BundleSet(self._bundles.current().x509.values())


def client_or_endpoint(
    client: C, endpoint: E, kind: str
) -> tuple[C | None, E | str | WorkloadEndpoint]:
    """A source's (client, endpoint) arguments, taking an address given as the first
    argument (``X509Source("unix:///path")``) as the endpoint, as ``WorkloadApiClient``
    takes it."""
    if isinstance(client, (str, os.PathLike, WorkloadEndpoint)):
        if endpoint is not None:
            raise TypeError(
                f"{kind}: the first argument is a Workload API client; the address goes in "
                f"endpoint= (got an address both as the first argument and as endpoint=)"
            )
        return None, os.fspath(client) if isinstance(client, os.PathLike) else client
    return client, endpoint
