"""The Workload API client, for asyncio (grpc.aio) and blocking code.

The asyncio client is the one written by hand; `scripts/gen-sync` generates the blocking
twin from it (the same class name without `Async`, the same methods without `await`).
"""

from __future__ import annotations

import asyncio  # ASYNC
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

import grpc
import grpc.aio  # ASYNC

from spire_fabric.identity import BundleSet, JwtBundle, JwtSvid, SpiffeId, X509Bundle, X509Svid
from spire_fabric.proto.workload import workload_pb2, workload_pb2_grpc

from ._async_watch import AsyncWatcher, AsyncWatchStream
from ._backoff import BackoffPolicy
from ._base import (
    CHANNEL_OPTIONS,
    METADATA,
    ClientBase,
    ErrorCallback,
    audiences,
    subject_string,
    validation_error,
)
from ._convert import (
    X509Context,
    jwt_bundles_from_response,
    jwt_svid_from_token,
    jwt_svids_from_response,
    x509_bundles_from_response,
    x509_context_from_response,
    x509_svid_from_message,
)
from ._convert import (
    bundle_set as _bundle_set,
)
from ._endpoint import WorkloadEndpoint
from ._errors import WorkloadApiResponseError

__all__ = ["AsyncWorkloadApiClient"]

T = TypeVar("T")
_SOCKET_POLL = 0.05

if True:  # ASYNC
    _EOF: Any = grpc.aio.EOF
else:
    _EOF = object()


class AsyncWorkloadApiClient(ClientBase):
    """A client of the SPIFFE Workload API of a local SPIRE agent.

    ``endpoint`` defaults to ``SPIFFE_ENDPOINT_SOCKET``. Unary calls wait up to
    ``wait_for_socket`` seconds for a unix socket that is not there yet (the agent may
    start after the workload), then have ``timeout`` seconds to answer. Streams
    (``watch_*``) reconnect with ``backoff`` until closed. In the asyncio client the gRPC
    channel is created on first use, inside the running event loop (grpc.aio channels
    belong to one loop). Use ``async with AsyncWorkloadApiClient() as client:`` or
    ``await client.close()``.
    """

    def __init__(
        self,
        endpoint: str | WorkloadEndpoint | None = None,
        *,
        timeout: float = 5.0,
        wait_for_socket: float = 10.0,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        super().__init__(
            endpoint, timeout=timeout, wait_for_socket=wait_for_socket, backoff=backoff
        )
        if True:  # ASYNC
            self._channel: Any = None
            self._stub: Any = None
        else:
            self._channel = grpc.insecure_channel(self.endpoint.target, options=CHANNEL_OPTIONS)
            self._stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(self._channel)

    # -- unary --------------------------------------------------------------------------

    def _get_stub(self) -> Any:
        self._check_open()
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.endpoint.target, options=CHANNEL_OPTIONS)
            self._stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(self._channel)
        return self._stub

    async def _prepare(self) -> Any:
        stub = self._get_stub()
        if not self._socket_present():
            deadline = time.monotonic() + self.wait_for_socket
            while not self._socket_present():
                if time.monotonic() >= deadline:
                    raise self._socket_missing_error()
                await asyncio.sleep(_SOCKET_POLL)
        return stub

    async def _first(self, method: str, request: Any, timeout: float | None) -> Any:
        """The first message of a server stream: what a one-shot fetch needs."""
        stub = await self._prepare()
        limit = timeout or self.timeout
        call = getattr(stub, method)(request, metadata=METADATA, timeout=limit, wait_for_ready=True)
        try:
            if True:  # ASYNC
                response = await call.read()
            else:
                response = next(call, _EOF)
        except grpc.RpcError as err:
            raise self._error(err, method, limit) from err
        finally:
            call.cancel()
        if response is _EOF:
            raise WorkloadApiResponseError(
                f"{method}: Workload API at {self.endpoint} closed the stream without a message",
                endpoint=self.endpoint.address,
            )
        return response

    async def _unary(self, method: str, request: Any, timeout: float | None) -> Any:
        stub = await self._prepare()
        limit = timeout or self.timeout
        return await getattr(stub, method)(
            request, metadata=METADATA, timeout=limit, wait_for_ready=True
        )

    async def fetch_x509_context(self, *, timeout: float | None = None) -> X509Context:
        """All X509-SVIDs of this workload and every X.509 bundle it may trust (incl. federated)."""
        response = await self._first("FetchX509SVID", workload_pb2.X509SVIDRequest(), timeout)
        return x509_context_from_response(response, self.endpoint.address)

    async def fetch_x509_svid(self, *, timeout: float | None = None) -> X509Svid:
        """The default X509-SVID (the first the agent lists); only that one is parsed."""
        response = await self._first("FetchX509SVID", workload_pb2.X509SVIDRequest(), timeout)
        if not response.svids:
            raise WorkloadApiResponseError(
                f"Workload API at {self.endpoint} sent an X.509 SVID response without SVIDs",
                endpoint=self.endpoint.address,
            )
        return x509_svid_from_message(response.svids[0], self.endpoint.address)

    async def fetch_x509_svids(self, *, timeout: float | None = None) -> list[X509Svid]:
        """Every X509-SVID of this workload, default first."""
        return list((await self.fetch_x509_context(timeout=timeout)).svids)

    async def fetch_x509_bundles(self, *, timeout: float | None = None) -> BundleSet[X509Bundle]:
        """The X.509 bundles this workload may trust (own and federated)."""
        response = await self._first("FetchX509Bundles", workload_pb2.X509BundlesRequest(), timeout)
        return BundleSet(x509_bundles_from_response(response, self.endpoint.address).values())

    async def fetch_jwt_bundles(self, *, timeout: float | None = None) -> BundleSet[JwtBundle]:
        """The JWT bundles this workload may trust (own and federated)."""
        response = await self._first("FetchJWTBundles", workload_pb2.JWTBundlesRequest(), timeout)
        return BundleSet(jwt_bundles_from_response(response, self.endpoint.address).values())

    async def fetch_jwt_svids(
        self,
        audience: str,
        *extra_audiences: str,
        subject: SpiffeId | str | None = None,
        timeout: float | None = None,
    ) -> list[JwtSvid]:
        """A JWT-SVID for each identity of this workload (or only ``subject``'s)."""
        auds = audiences(audience, extra_audiences)
        request = workload_pb2.JWTSVIDRequest(audience=auds, spiffe_id=subject_string(subject))
        try:
            response = await self._unary("FetchJWTSVID", request, timeout)
        except grpc.RpcError as err:
            raise self._error(err, "FetchJWTSVID", timeout or self.timeout) from err
        return jwt_svids_from_response(response, auds, self.endpoint.address)

    async def fetch_jwt_svid(
        self,
        audience: str,
        *extra_audiences: str,
        subject: SpiffeId | str | None = None,
        timeout: float | None = None,
    ) -> JwtSvid:
        """A JWT-SVID for ``audience`` (and ``extra_audiences``): the default identity's, or
        ``subject``'s if this workload has several."""
        svids = await self.fetch_jwt_svids(
            audience, *extra_audiences, subject=subject, timeout=timeout
        )
        return svids[0]

    async def validate_jwt_svid(
        self, token: str, audience: str, *, timeout: float | None = None
    ) -> JwtSvid:
        """Have the agent validate ``token`` for ``audience`` against the bundles it holds
        (own and federated); raises JwtSvidRejectedError naming the agent's reason."""
        if not token:
            raise ValueError("validate_jwt_svid: token must not be empty")
        if not audience:
            raise ValueError("validate_jwt_svid: audience must not be empty")
        request = workload_pb2.ValidateJWTSVIDRequest(audience=audience, svid=token)
        try:
            await self._unary("ValidateJWTSVID", request, timeout)
        except grpc.RpcError as err:
            raise validation_error(err, self.endpoint, audience, closed=self._closed) from err
        return jwt_svid_from_token(token, (audience,), self.endpoint.address)

    # -- streams ------------------------------------------------------------------------

    def _stream(
        self,
        method: str,
        request: Any,
        convert: Callable[[Any], T],
        on_error: ErrorCallback | None,
    ) -> AsyncWatchStream[T]:
        self._check_open()

        async def open_call() -> Any:
            return getattr(self._get_stub(), method)(request, metadata=METADATA)

        return AsyncWatchStream(
            open_call,
            convert,
            lambda err: self._error(err, method),
            what=method,
            endpoint=self.endpoint.address,
            backoff=self.backoff,
            on_error=on_error,
        )

    @overload
    def watch_x509_context(
        self, on_update: None = None, *, on_error: ErrorCallback | None = None
    ) -> AsyncWatchStream[X509Context]: ...
    @overload
    def watch_x509_context(
        self, on_update: Callable[[X509Context], Any], *, on_error: ErrorCallback | None = None
    ) -> AsyncWatcher[X509Context]: ...
    def watch_x509_context(
        self,
        on_update: Callable[[X509Context], Any] | None = None,
        *,
        on_error: ErrorCallback | None = None,
    ) -> AsyncWatchStream[X509Context] | AsyncWatcher[X509Context]:
        """Every X.509 context the agent sends, as an async iterator, or to ``on_update``
        from a background reader (a task that also takes async callbacks; a daemon thread in
        the blocking client). Either way the stream reconnects until closed."""
        stream = self._stream(
            "FetchX509SVID",
            workload_pb2.X509SVIDRequest(),
            lambda r: x509_context_from_response(r, self.endpoint.address),
            on_error,
        )
        if on_update is None:
            return stream
        return AsyncWatcher(stream, on_update, "watch-x509-context")

    @overload
    def watch_x509_bundles(
        self, on_update: None = None, *, on_error: ErrorCallback | None = None
    ) -> AsyncWatchStream[BundleSet[X509Bundle]]: ...
    @overload
    def watch_x509_bundles(
        self,
        on_update: Callable[[BundleSet[X509Bundle]], Any],
        *,
        on_error: ErrorCallback | None = None,
    ) -> AsyncWatcher[BundleSet[X509Bundle]]: ...
    def watch_x509_bundles(
        self,
        on_update: Callable[[BundleSet[X509Bundle]], Any] | None = None,
        *,
        on_error: ErrorCallback | None = None,
    ) -> AsyncWatchStream[BundleSet[X509Bundle]] | AsyncWatcher[BundleSet[X509Bundle]]:
        """X.509 bundle updates: an iterator, or a watcher calling ``on_update`` per update."""
        stream = self._stream(
            "FetchX509Bundles",
            workload_pb2.X509BundlesRequest(),
            lambda r: _bundle_set(x509_bundles_from_response(r, self.endpoint.address)),
            on_error,
        )
        if on_update is None:
            return stream
        return AsyncWatcher(stream, on_update, "watch-x509-bundles")

    @overload
    def watch_jwt_bundles(
        self, on_update: None = None, *, on_error: ErrorCallback | None = None
    ) -> AsyncWatchStream[BundleSet[JwtBundle]]: ...
    @overload
    def watch_jwt_bundles(
        self,
        on_update: Callable[[BundleSet[JwtBundle]], Any],
        *,
        on_error: ErrorCallback | None = None,
    ) -> AsyncWatcher[BundleSet[JwtBundle]]: ...
    def watch_jwt_bundles(
        self,
        on_update: Callable[[BundleSet[JwtBundle]], Any] | None = None,
        *,
        on_error: ErrorCallback | None = None,
    ) -> AsyncWatchStream[BundleSet[JwtBundle]] | AsyncWatcher[BundleSet[JwtBundle]]:
        """JWT bundle updates: an iterator, or a watcher calling ``on_update`` per update."""
        stream = self._stream(
            "FetchJWTBundles",
            workload_pb2.JWTBundlesRequest(),
            lambda r: _bundle_set(jwt_bundles_from_response(r, self.endpoint.address)),
            on_error,
        )
        if on_update is None:
            return stream
        return AsyncWatcher(stream, on_update, "watch-jwt-bundles")

    # -- lifecycle ----------------------------------------------------------------------

    async def close(self) -> None:
        """Close the channel; open streams end (watchers stop, iterators finish)."""
        if self._closed:
            return
        self._closed = True
        if self._channel is not None:
            await self._channel.close()

    async def __aenter__(self) -> AsyncWorkloadApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
