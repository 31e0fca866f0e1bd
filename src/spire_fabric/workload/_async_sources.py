"""AsyncX509Source, AsyncJwtSource and AsyncBundleSource: the asyncio twins of the sources.

Same snapshot, getters, health and listeners (``_source_core``); the watch runs as a task
on the event loop. Getters stay plain methods (they read memory), so code written against
``X509Source`` (e.g. an ``ssl`` handshake callback) works with either.

Start with ``async with AsyncX509Source(...) as source:`` or
``source = await AsyncX509Source(...).start()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from spire_fabric.identity import BundleSet, JwtBundle, JwtSvid, SpiffeId

from ._async_client import AsyncWorkloadApiClient
from ._async_watch import AsyncWatcher
from ._base import ErrorCallback, audiences, report, subject_string
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
    not_ready_error,
    pick,
    x509_builder,
)
from ._sources import DEFAULT_FIRST_UPDATE_TIMEOUT

__all__ = ["AsyncBundleSource", "AsyncJwtSource", "AsyncX509Source"]


class _AsyncSource:
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
        self._event: asyncio.Event | None = None
        self._started = False

    def _make_watchers(self) -> list[AsyncWatcher[Any]]:
        raise NotImplementedError

    async def start(self) -> Any:
        """Start watching and wait (bounded) for the first update. Returns the source."""
        if self._started:
            return self
        self._started = True
        self._event = asyncio.Event()
        self._watchers = self._make_watchers()
        try:
            await asyncio.wait_for(self._until_ready(), self._first_update_timeout)
        except asyncio.TimeoutError as err:
            error = not_ready_error(self._state, self._first_update_timeout)
            await self.close()
            raise error from err
        except BaseException:
            await self.close()
            raise
        return self

    async def _until_ready(self) -> None:
        while not (self._state.ready or self._state.closed):
            await self._next_event()
        if not self._state.ready:
            raise not_ready_error(self._state, self._first_update_timeout)

    async def _next_event(self) -> None:
        assert self._event is not None, "start() the source first"
        await self._event.wait()

    def _kick(self) -> None:
        """Wake every waiter: a fresh event per round, so a waiter sees each change once."""
        event, self._event = self._event, asyncio.Event()
        if event is not None:
            event.set()

    def _publish(self, stream: str, build: Any) -> None:
        self._state.publish(stream, build)
        self._kick()

    def _error_handler(self, stream: str) -> ErrorCallback:
        def on_error(error: WorkloadApiError) -> None:
            self._state.fail(stream, error)
            self._kick()
            if self._user_on_error is not None:
                self._user_on_error(error)

        return on_error

    @property
    def endpoint(self) -> str:
        return self._client.endpoint.address

    async def wait_until_updated(self, timeout: float | None = None) -> bool:
        """Wait for the next update (True) or until ``timeout`` passes (False)."""
        seen = self._state.generation

        async def newer() -> None:
            while self._state.generation == seen and not self._state.closed:
                await self._next_event()

        try:
            await asyncio.wait_for(newer(), timeout)
        except asyncio.TimeoutError:
            return False
        return not self._state.closed

    @property
    def closed(self) -> bool:
        return self._state.closed

    async def close(self) -> None:
        """Stop the watch tasks (and the client, if the source created it). Idempotent."""
        self._state.close()
        self._kick()
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


class AsyncX509Source(X509Getters, _AsyncSource):
    """The asyncio twin of :class:`X509Source`."""

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

    def _make_watchers(self) -> list[AsyncWatcher[Any]]:
        return [
            self._client.watch_x509_context(self._on_update, on_error=self._error_handler("x509"))
        ]

    def _on_update(self, context: X509Context) -> None:
        try:
            svid = pick(self._picker, context, "AsyncX509Source")
        except WorkloadApiError as error:
            report(error, self._error_handler("x509"))
            return
        self._publish("x509", x509_builder(context, svid))

    async def start(self) -> AsyncX509Source:
        return await super().start()  # type: ignore[no-any-return]

    async def __aenter__(self) -> AsyncX509Source:
        return await self.start()


class AsyncJwtSource(JwtBundleGetters, _AsyncSource):
    """The asyncio twin of :class:`JwtSource`."""

    def __init__(
        self,
        client: AsyncWorkloadApiClient | None = None,
        *,
        endpoint: str | WorkloadEndpoint | None = None,
        first_update_timeout: float = DEFAULT_FIRST_UPDATE_TIMEOUT,
        on_error: ErrorCallback | None = None,
    ) -> None:
        super().__init__(client, endpoint, on_error, first_update_timeout)
        self._cache = JwtSvidCache()
        self._bundles = self._state = SourceState[BundlesSnapshot](
            "AsyncJwtSource", self.endpoint, ["jwt"]
        )

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
        """A JWT-SVID for the audiences, cached until half its lifetime has passed."""
        self._bundles.current()  # raises if closed or not started
        auds = audiences(audience, extra_audiences)
        key = self._cache.key(auds, subject_string(subject))
        svid = self._cache.get(key)
        if svid is None:
            fetched_at = time.time()
            svid = await self._client.fetch_jwt_svid(*auds, subject=subject)
            self._cache.put(key, svid, fetched_at)
        return svid

    async def start(self) -> AsyncJwtSource:
        return await super().start()  # type: ignore[no-any-return]

    async def __aenter__(self) -> AsyncJwtSource:
        return await self.start()

    async def close(self) -> None:
        self._cache.clear()
        await super().close()


class AsyncBundleSource(BundleGetters, _AsyncSource):
    """The asyncio twin of :class:`BundleSource`."""

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

    async def start(self) -> AsyncBundleSource:
        return await super().start()  # type: ignore[no-any-return]

    async def __aenter__(self) -> AsyncBundleSource:
        return await self.start()
