"""AsyncX509Source, AsyncJwtSource and AsyncBundleSource: always-current identity from the
Workload API.

The asyncio module is the one written by hand; `scripts/gen-sync` generates the blocking
twin from it. Each source keeps the latest state as one immutable snapshot (see
``_source_core``) and runs its watch in the background (an asyncio task; a daemon thread in
the blocking twin). A broken stream flips ``healthy`` and is repaired in the background,
without the application doing anything. Getters are plain methods (they read memory), so
code written against one twin (e.g. an ``ssl`` handshake callback) works with the other.

Starting waits (bounded) for the first update, so a started source is a source that works.
The asyncio sources are started by ``start()`` or by entering them as async context
managers; the blocking ones by their constructor.
"""

from __future__ import annotations

import asyncio  # ASYNC
import contextlib
from typing import Any

from spire_fabric.identity import BundleSet, JwtBundle, JwtSvid, SpiffeId

from ._async_client import AsyncWorkloadApiClient
from ._async_watch import AsyncWatcher
from ._base import ErrorCallback, audiences, report
from ._convert import X509Context
from ._endpoint import WorkloadEndpoint
from ._errors import WorkloadApiError
from ._pickers import X509SvidPicker, pick_first
from ._source_core import (
    DEFAULT_FIRST_UPDATE_TIMEOUT,
    BundleGetters,
    BundlesSnapshot,
    JwtBundleGetters,
    SourceState,
    X509Getters,
    X509Snapshot,
    bundles_builder,
    client_or_endpoint,
    pick,
    x509_builder,
)

__all__ = ["AsyncBundleSource", "AsyncJwtSource", "AsyncX509Source"]


class _Source:
    """Client ownership, watchers, waiting and closing, shared by the sources."""

    _state: SourceState[Any]

    def __init__(
        self,
        client: AsyncWorkloadApiClient | None,
        endpoint: str | WorkloadEndpoint | None,
        on_error: ErrorCallback | None,
        first_update_timeout: float,
    ) -> None:
        client, endpoint = client_or_endpoint(client, endpoint, type(self).__name__)
        self._owns_client = client is None
        self._client = client if client is not None else AsyncWorkloadApiClient(endpoint)
        self._user_on_error = on_error
        self._first_update_timeout = first_update_timeout
        self._watchers: list[AsyncWatcher[Any]] = []
        self._started = False
        if True:  # ASYNC
            self._event: asyncio.Event | None = None

    def _make_watchers(self) -> list[AsyncWatcher[Any]]:
        raise NotImplementedError

    async def start(self) -> Any:
        """Start watching and wait (bounded) for the first update. Returns the source."""
        if self._started:
            return self
        self._started = True
        if True:  # ASYNC
            self._event = asyncio.Event()
        try:
            self._watchers = self._make_watchers()
            await self._until_ready()
        except BaseException:
            await self.close()
            raise
        return self

    if True:  # ASYNC

        async def _until_ready(self) -> None:
            """Wait until every stream delivered once; raise a clear error if none does."""
            try:
                await asyncio.wait_for(self._ready_or_closed(), self._first_update_timeout)
            except asyncio.TimeoutError as err:
                raise self._state.not_ready(self._first_update_timeout) from err
            if not self._state.ready:
                raise self._state.not_ready(self._first_update_timeout)

        async def _ready_or_closed(self) -> None:
            while not (self._state.ready or self._state.closed):
                await self._next_event()

        async def _next_event(self) -> None:
            assert self._event is not None, "start() the source first"
            await self._event.wait()

        def _kick(self) -> None:
            """Wake every waiter: a fresh event per round, so a waiter sees each change once."""
            event, self._event = self._event, asyncio.Event()
            if event is not None:
                event.set()

    else:

        def _until_ready(self) -> None:
            """Wait until every stream delivered once; raise a clear error if none does."""
            self._state.wait_ready(self._first_update_timeout)

    def _publish(self, stream: str, build: Any) -> None:
        self._state.publish(stream, build)
        self._kick()  # ASYNC

    def _error_handler(self, stream: str) -> ErrorCallback:
        def on_error(error: WorkloadApiError) -> None:
            self._state.fail(stream, error)
            self._kick()  # ASYNC
            if self._user_on_error is not None:
                self._user_on_error(error)

        return on_error

    @property
    def endpoint(self) -> str:
        return self._client.endpoint.address

    async def wait_until_updated(self, timeout: float | None = None) -> bool:
        """Wait for the next update (True) or until ``timeout`` passes (False)."""
        if True:  # ASYNC
            seen = self._state.generation

            async def newer() -> None:
                while self._state.generation == seen and not self._state.closed:
                    await self._next_event()

            try:
                await asyncio.wait_for(newer(), timeout)
            except asyncio.TimeoutError:
                return False
            return not self._state.closed
        else:
            return self._state.wait_next(timeout)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._state.closed

    async def close(self) -> None:
        """Stop the watchers (and the client, if the source created it). Idempotent."""
        self._state.close()
        self._kick()  # ASYNC
        for watcher in self._watchers:
            with contextlib.suppress(Exception):
                await watcher.aclose()
        if self._owns_client:
            await self._client.close()

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("healthy" if self._state.healthy else "unhealthy")
        return f"{type(self).__name__}({self.endpoint!r}, {state})"


class AsyncX509Source(X509Getters, _Source):
    """The workload's X509-SVID and X.509 bundles (own and federated), kept current.

    ``picker`` chooses among several SVIDs (default: the first, as SPIRE orders them),
    e.g. ``pick_by_hint("internal")``.
    """

    def __init__(
        self,
        client: AsyncWorkloadApiClient | None = None,
        *,
        endpoint: str | WorkloadEndpoint | None = None,
        picker: X509SvidPicker = pick_first,
        first_update_timeout: float = DEFAULT_FIRST_UPDATE_TIMEOUT,
        on_error: ErrorCallback | None = None,
    ) -> None:
        super().__init__(client, endpoint, on_error, first_update_timeout)
        self._picker = picker
        self._x509 = self._state = SourceState[X509Snapshot](
            "AsyncX509Source", self.endpoint, ["x509"]
        )
        if True:  # ASYNC
            pass  # started by `await source.start()` or `async with source`
        else:
            self.start()

    def _make_watchers(self) -> list[AsyncWatcher[Any]]:
        return [
            self._client.watch_x509_context(self._on_update, on_error=self._error_handler("x509"))
        ]

    def _on_update(self, context: X509Context) -> None:
        try:
            svid = pick(self._picker, context, "AsyncX509Source")
        except WorkloadApiError as error:
            # An update we cannot use counts as a broken stream: report it, keep the old state.
            report(error, self._error_handler("x509"))
            return
        self._publish("x509", x509_builder(context, svid))

    if True:  # ASYNC

        async def start(self) -> AsyncX509Source:
            """Start watching and wait (bounded) for the first update; returns the source."""
            return await super().start()  # type: ignore[no-any-return]

        async def __aenter__(self) -> AsyncX509Source:
            return await self.start()


class AsyncJwtSource(JwtBundleGetters, _Source):
    """JWT bundles (own and federated) kept current, and JWT-SVIDs on demand."""

    def __init__(
        self,
        client: AsyncWorkloadApiClient | None = None,
        *,
        endpoint: str | WorkloadEndpoint | None = None,
        first_update_timeout: float = DEFAULT_FIRST_UPDATE_TIMEOUT,
        on_error: ErrorCallback | None = None,
    ) -> None:
        super().__init__(client, endpoint, on_error, first_update_timeout)
        self._bundles = self._state = SourceState[BundlesSnapshot](
            "AsyncJwtSource", self.endpoint, ["jwt"]
        )
        if True:  # ASYNC
            pass  # started by `await source.start()` or `async with source`
        else:
            self.start()

    def _make_watchers(self) -> list[AsyncWatcher[Any]]:
        on_error = self._error_handler("jwt")
        return [self._client.watch_jwt_bundles(self._on_update, on_error=on_error)]

    def _on_update(self, bundles: BundleSet[JwtBundle]) -> None:
        self._publish("jwt", bundles_builder(jwt=bundles))

    async def fetch_jwt_svid(
        self,
        audience: str,
        *extra_audiences: str,
        subject: SpiffeId | str | None = None,
    ) -> JwtSvid:
        """A JWT-SVID for the audiences, asked of the agent on every call (as go-spiffe's
        JWTSource does). The agent caches JWT-SVIDs itself, and it is the one cache that
        sees a signing key tainted: it drops what that key signed, so a forced rotation
        can revoke the key once every agent re-signed. A cache here could not see a
        taint (the Workload API's JWKS carry no such flag) and would keep handing out a
        token of the revoked key, refused everywhere, for up to half its lifetime."""
        self._bundles.current()  # raises if closed or not started
        auds = audiences(audience, extra_audiences)
        return await self._client.fetch_jwt_svid(*auds, subject=subject)

    if True:  # ASYNC

        async def start(self) -> AsyncJwtSource:
            """Start watching and wait (bounded) for the first update; returns the source."""
            return await super().start()  # type: ignore[no-any-return]

        async def __aenter__(self) -> AsyncJwtSource:
            return await self.start()

    async def close(self) -> None:
        """Stop watching. Idempotent."""
        await super().close()


class AsyncBundleSource(BundleGetters, _Source):
    """X.509 and JWT bundles of every trust domain the workload may trust, kept current.

    For verifiers that need no SVID of their own; it is both an X509BundleSource and a
    JwtBundleSource.
    """

    def __init__(
        self,
        client: AsyncWorkloadApiClient | None = None,
        *,
        endpoint: str | WorkloadEndpoint | None = None,
        first_update_timeout: float = DEFAULT_FIRST_UPDATE_TIMEOUT,
        on_error: ErrorCallback | None = None,
    ) -> None:
        super().__init__(client, endpoint, on_error, first_update_timeout)
        self._bundles = self._state = SourceState[BundlesSnapshot](
            "AsyncBundleSource", self.endpoint, ["x509", "jwt"]
        )
        if True:  # ASYNC
            pass  # started by `await source.start()` or `async with source`
        else:
            self.start()

    def _make_watchers(self) -> list[AsyncWatcher[Any]]:
        return [
            self._client.watch_x509_bundles(
                lambda b: self._publish("x509", bundles_builder(x509=b)),
                on_error=self._error_handler("x509"),
            ),
            self._client.watch_jwt_bundles(
                lambda b: self._publish("jwt", bundles_builder(jwt=b)),
                on_error=self._error_handler("jwt"),
            ),
        ]

    if True:  # ASYNC

        async def start(self) -> AsyncBundleSource:
            """Start watching and wait (bounded) for the first update; returns the source."""
            return await super().start()  # type: ignore[no-any-return]

        async def __aenter__(self) -> AsyncBundleSource:
            return await self.start()
