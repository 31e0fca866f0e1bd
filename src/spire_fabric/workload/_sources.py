"""X509Source, JwtSource and BundleSource: always-current identity from the Workload API.

Each runs its watch in a daemon thread and keeps the latest state as one immutable
snapshot (see ``_source_core``). The constructor blocks until the first update, so a
source that exists is a source that works; a broken stream flips ``healthy`` and is
repaired in the background, without the application doing anything.
"""

from __future__ import annotations

import time
from typing import Any

from spire_fabric.identity import BundleSet, JwtBundle, JwtSvid, SpiffeId

from ._base import ErrorCallback, audiences, report, subject_string
from ._client import WorkloadApiClient
from ._convert import X509Context
from ._endpoint import WorkloadEndpoint
from ._errors import WorkloadApiError
from ._pickers import X509SvidPicker, pick_first
from ._source_core import (
    BundleGetters,
    BundlesSnapshot,
    JwtBundleGetters,
    JwtSvidCache,
    SourceState,
    X509Getters,
    X509Snapshot,
    bundles_builder,
    client_or_endpoint,
    pick,
    x509_builder,
)
from ._watch import Watcher

__all__ = ["BundleSource", "JwtSource", "X509Source"]

DEFAULT_FIRST_UPDATE_TIMEOUT = 15.0


class _Source:
    """Client ownership, watcher threads, waiting and closing, shared by the sync sources."""

    _state: SourceState[Any]

    def __init__(
        self,
        client: WorkloadApiClient | None,
        endpoint: str | WorkloadEndpoint | None,
        on_error: ErrorCallback | None,
    ) -> None:
        client, endpoint = client_or_endpoint(client, endpoint, type(self).__name__)
        self._owns_client = client is None
        self._client = client if client is not None else WorkloadApiClient(endpoint)
        self._user_on_error = on_error
        self._watchers: list[Watcher[Any]] = []

    def _start(self, watchers: list[Watcher[Any]], first_update_timeout: float) -> None:
        self._watchers = watchers
        try:
            self._state.wait_ready(first_update_timeout)
        except BaseException:
            self.close()
            raise

    def _error_handler(self, stream: str) -> ErrorCallback:
        def on_error(error: WorkloadApiError) -> None:
            self._state.fail(stream, error)
            if self._user_on_error is not None:
                self._user_on_error(error)

        return on_error

    def _reject(self, stream: str, error: WorkloadApiError) -> None:
        """An update we cannot use counts as a broken stream: report it, keep the old state."""
        report(error, self._error_handler(stream))

    @property
    def endpoint(self) -> str:
        return self._client.endpoint.address

    def wait_until_updated(self, timeout: float | None = None) -> bool:
        """Block until the next update arrives (True) or ``timeout`` passes (False)."""
        return self._state.wait_next(timeout)

    @property
    def closed(self) -> bool:
        return self._state.closed

    def close(self) -> None:
        """Stop the watch threads (and the client, if the source created it). Idempotent."""
        self._state.close()
        for watcher in self._watchers:
            watcher.close()
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("healthy" if self._state.healthy else "unhealthy")
        return f"{type(self).__name__}({self.endpoint!r}, {state})"


class X509Source(X509Getters, _Source):
    """The workload's X509-SVID and X.509 bundles (own and federated), kept current.

    ``picker`` chooses among several SVIDs (default: the first, as SPIRE orders them),
    e.g. ``pick_by_hint("internal")``.
    """

    def __init__(
        self,
        client: WorkloadApiClient | None = None,
        *,
        endpoint: str | WorkloadEndpoint | None = None,
        picker: X509SvidPicker = pick_first,
        first_update_timeout: float = DEFAULT_FIRST_UPDATE_TIMEOUT,
        on_error: ErrorCallback | None = None,
    ) -> None:
        super().__init__(client, endpoint, on_error)
        self._picker = picker
        self._x509 = self._state = SourceState[X509Snapshot]("X509Source", self.endpoint, ["x509"])
        watcher = self._client.watch_x509_context(
            self._on_update, on_error=self._error_handler("x509")
        )
        self._start([watcher], first_update_timeout)

    def _on_update(self, context: X509Context) -> None:
        try:
            svid = pick(self._picker, context, "X509Source")
        except WorkloadApiError as error:
            self._reject("x509", error)
            return
        self._x509.publish("x509", x509_builder(context, svid))


class JwtSource(JwtBundleGetters, _Source):
    """JWT bundles (own and federated) kept current, and cached JWT-SVIDs on demand."""

    def __init__(
        self,
        client: WorkloadApiClient | None = None,
        *,
        endpoint: str | WorkloadEndpoint | None = None,
        first_update_timeout: float = DEFAULT_FIRST_UPDATE_TIMEOUT,
        on_error: ErrorCallback | None = None,
    ) -> None:
        super().__init__(client, endpoint, on_error)
        self._cache = JwtSvidCache()
        self._bundles = self._state = SourceState[BundlesSnapshot](
            "JwtSource", self.endpoint, ["jwt"]
        )
        watcher = self._client.watch_jwt_bundles(
            self._on_update, on_error=self._error_handler("jwt")
        )
        self._start([watcher], first_update_timeout)

    def _on_update(self, bundles: BundleSet[JwtBundle]) -> None:
        self._bundles.publish("jwt", bundles_builder(jwt=bundles))

    def fetch_jwt_svid(
        self,
        audience: str,
        *extra_audiences: str,
        subject: SpiffeId | str | None = None,
    ) -> JwtSvid:
        """A JWT-SVID for the audiences, from the cache while it has more than half its
        lifetime left, else freshly from the agent."""
        self._bundles.current()  # raises if closed
        auds = audiences(audience, extra_audiences)
        key = self._cache.key(auds, subject_string(subject))
        svid = self._cache.get(key)
        if svid is None:
            fetched_at = time.time()
            svid = self._client.fetch_jwt_svid(*auds, subject=subject)
            self._cache.put(key, svid, fetched_at)
        return svid

    def close(self) -> None:
        self._cache.clear()
        super().close()


class BundleSource(BundleGetters, _Source):
    """X.509 and JWT bundles of every trust domain the workload may trust, kept current.

    For verifiers that need no SVID of their own; it is both an X509BundleSource and a
    JwtBundleSource.
    """

    def __init__(
        self,
        client: WorkloadApiClient | None = None,
        *,
        endpoint: str | WorkloadEndpoint | None = None,
        first_update_timeout: float = DEFAULT_FIRST_UPDATE_TIMEOUT,
        on_error: ErrorCallback | None = None,
    ) -> None:
        super().__init__(client, endpoint, on_error)
        self._bundles = self._state = SourceState[BundlesSnapshot](
            "BundleSource", self.endpoint, ["x509", "jwt"]
        )
        watchers: list[Watcher[Any]] = [
            self._client.watch_x509_bundles(
                lambda b: self._bundles.publish("x509", bundles_builder(x509=b)),
                on_error=self._error_handler("x509"),
            ),
            self._client.watch_jwt_bundles(
                lambda b: self._bundles.publish("jwt", bundles_builder(jwt=b)),
                on_error=self._error_handler("jwt"),
            ),
        ]
        self._start(watchers, first_update_timeout)
