"""The synchronous Workload API client."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

import grpc

from spire_fabric.identity import BundleSet, JwtBundle, JwtSvid, SpiffeId, X509Bundle, X509Svid
from spire_fabric.proto.workload import workload_pb2, workload_pb2_grpc

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
from ._watch import Watcher, WatchStream

__all__ = ["WorkloadApiClient"]

T = TypeVar("T")
_SOCKET_POLL = 0.05


class WorkloadApiClient(ClientBase):
    """A blocking client of the SPIFFE Workload API of a local SPIRE agent.

    ``endpoint`` defaults to ``SPIFFE_ENDPOINT_SOCKET``. Unary calls wait up to
    ``wait_for_socket`` seconds for a unix socket that is not there yet (the agent may
    start after the workload), then have ``timeout`` seconds to answer. Streams
    (``watch_*``) reconnect with ``backoff`` until closed.
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
        self._channel = grpc.insecure_channel(self.endpoint.target, options=CHANNEL_OPTIONS)
        self._stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(self._channel)

    # -- unary --------------------------------------------------------------------------

    def _prepare(self) -> None:
        self._check_open()
        if self._socket_present():
            return
        deadline = time.monotonic() + self.wait_for_socket
        while not self._socket_present():
            if time.monotonic() >= deadline:
                raise self._socket_missing_error()
            time.sleep(_SOCKET_POLL)

    def _first(self, method: Any, request: Any, what: str, timeout: float | None) -> Any:
        """The first message of a server stream: what a one-shot fetch needs."""
        self._prepare()
        limit = timeout or self.timeout
        call = method(request, metadata=METADATA, timeout=limit, wait_for_ready=True)
        try:
            return next(call)
        except grpc.RpcError as err:
            raise self._error(err, what, limit) from None
        except StopIteration:
            raise WorkloadApiResponseError(
                f"{what}: Workload API at {self.endpoint} closed the stream without a message",
                endpoint=self.endpoint.address,
            ) from None
        finally:
            call.cancel()

    def fetch_x509_context(self, *, timeout: float | None = None) -> X509Context:
        """All X509-SVIDs of this workload and every X.509 bundle it may trust (incl. federated)."""
        response = self._first(
            self._stub.FetchX509SVID, workload_pb2.X509SVIDRequest(), "FetchX509SVID", timeout
        )
        return x509_context_from_response(response, self.endpoint.address)

    def fetch_x509_svid(self, *, timeout: float | None = None) -> X509Svid:
        """The default X509-SVID (the first the agent lists); only that one is parsed."""
        response = self._first(
            self._stub.FetchX509SVID, workload_pb2.X509SVIDRequest(), "FetchX509SVID", timeout
        )
        if not response.svids:
            raise WorkloadApiResponseError(
                f"Workload API at {self.endpoint} sent an X.509 SVID response without SVIDs",
                endpoint=self.endpoint.address,
            )
        return x509_svid_from_message(response.svids[0], self.endpoint.address)

    def fetch_x509_svids(self, *, timeout: float | None = None) -> list[X509Svid]:
        return list(self.fetch_x509_context(timeout=timeout).svids)

    def fetch_x509_bundles(self, *, timeout: float | None = None) -> BundleSet[X509Bundle]:
        response = self._first(
            self._stub.FetchX509Bundles,
            workload_pb2.X509BundlesRequest(),
            "FetchX509Bundles",
            timeout,
        )
        return BundleSet(x509_bundles_from_response(response, self.endpoint.address).values())

    def fetch_jwt_bundles(self, *, timeout: float | None = None) -> BundleSet[JwtBundle]:
        response = self._first(
            self._stub.FetchJWTBundles, workload_pb2.JWTBundlesRequest(), "FetchJWTBundles", timeout
        )
        return BundleSet(jwt_bundles_from_response(response, self.endpoint.address).values())

    def fetch_jwt_svids(
        self,
        audience: str,
        *extra_audiences: str,
        subject: SpiffeId | str | None = None,
        timeout: float | None = None,
    ) -> list[JwtSvid]:
        """A JWT-SVID for each identity of this workload (or only ``subject``'s)."""
        auds = audiences(audience, extra_audiences)
        request = workload_pb2.JWTSVIDRequest(audience=auds, spiffe_id=subject_string(subject))
        self._prepare()
        limit = timeout or self.timeout
        try:
            response = self._stub.FetchJWTSVID(
                request, metadata=METADATA, timeout=limit, wait_for_ready=True
            )
        except grpc.RpcError as err:
            raise self._error(err, "FetchJWTSVID", limit) from None
        return jwt_svids_from_response(response, auds, self.endpoint.address)

    def fetch_jwt_svid(
        self,
        audience: str,
        *extra_audiences: str,
        subject: SpiffeId | str | None = None,
        timeout: float | None = None,
    ) -> JwtSvid:
        """A JWT-SVID for ``audience`` (and ``extra_audiences``): the default identity's, or
        ``subject``'s if this workload has several."""
        return self.fetch_jwt_svids(audience, *extra_audiences, subject=subject, timeout=timeout)[0]

    def validate_jwt_svid(
        self, token: str, audience: str, *, timeout: float | None = None
    ) -> JwtSvid:
        """Have the agent validate ``token`` for ``audience`` against the bundles it holds
        (own and federated); raises JwtSvidRejectedError naming the agent's reason."""
        if not token:
            raise ValueError("validate_jwt_svid: token must not be empty")
        if not audience:
            raise ValueError("validate_jwt_svid: audience must not be empty")
        self._prepare()
        limit = timeout or self.timeout
        request = workload_pb2.ValidateJWTSVIDRequest(audience=audience, svid=token)
        try:
            self._stub.ValidateJWTSVID(
                request, metadata=METADATA, timeout=limit, wait_for_ready=True
            )
        except grpc.RpcError as err:
            raise validation_error(err, self.endpoint, audience, closed=self._closed) from None
        return jwt_svid_from_token(token, (audience,), self.endpoint.address)

    # -- streams ------------------------------------------------------------------------

    def _stream(
        self,
        method: Any,
        request: Any,
        convert: Callable[[Any], T],
        what: str,
        on_error: ErrorCallback | None,
    ) -> WatchStream[T]:
        self._check_open()
        return WatchStream(
            lambda: method(request, metadata=METADATA),
            convert,
            lambda err: self._error(err, what),
            what=what,
            endpoint=self.endpoint.address,
            backoff=self.backoff,
            on_error=on_error,
        )

    @overload
    def watch_x509_context(
        self, on_update: None = None, *, on_error: ErrorCallback | None = None
    ) -> WatchStream[X509Context]: ...
    @overload
    def watch_x509_context(
        self, on_update: Callable[[X509Context], None], *, on_error: ErrorCallback | None = None
    ) -> Watcher[X509Context]: ...
    def watch_x509_context(
        self,
        on_update: Callable[[X509Context], None] | None = None,
        *,
        on_error: ErrorCallback | None = None,
    ) -> WatchStream[X509Context] | Watcher[X509Context]:
        """Every X.509 context the agent sends, as an iterator, or to ``on_update`` from a
        daemon thread. Either way the stream reconnects until ``close()``."""
        stream = self._stream(
            self._stub.FetchX509SVID,
            workload_pb2.X509SVIDRequest(),
            lambda r: x509_context_from_response(r, self.endpoint.address),
            "FetchX509SVID",
            on_error,
        )
        return stream if on_update is None else Watcher(stream, on_update, "watch-x509-context")

    @overload
    def watch_x509_bundles(
        self, on_update: None = None, *, on_error: ErrorCallback | None = None
    ) -> WatchStream[BundleSet[X509Bundle]]: ...
    @overload
    def watch_x509_bundles(
        self,
        on_update: Callable[[BundleSet[X509Bundle]], None],
        *,
        on_error: ErrorCallback | None = None,
    ) -> Watcher[BundleSet[X509Bundle]]: ...
    def watch_x509_bundles(
        self,
        on_update: Callable[[BundleSet[X509Bundle]], None] | None = None,
        *,
        on_error: ErrorCallback | None = None,
    ) -> WatchStream[BundleSet[X509Bundle]] | Watcher[BundleSet[X509Bundle]]:
        stream = self._stream(
            self._stub.FetchX509Bundles,
            workload_pb2.X509BundlesRequest(),
            lambda r: _bundle_set(x509_bundles_from_response(r, self.endpoint.address)),
            "FetchX509Bundles",
            on_error,
        )
        return stream if on_update is None else Watcher(stream, on_update, "watch-x509-bundles")

    @overload
    def watch_jwt_bundles(
        self, on_update: None = None, *, on_error: ErrorCallback | None = None
    ) -> WatchStream[BundleSet[JwtBundle]]: ...
    @overload
    def watch_jwt_bundles(
        self,
        on_update: Callable[[BundleSet[JwtBundle]], None],
        *,
        on_error: ErrorCallback | None = None,
    ) -> Watcher[BundleSet[JwtBundle]]: ...
    def watch_jwt_bundles(
        self,
        on_update: Callable[[BundleSet[JwtBundle]], None] | None = None,
        *,
        on_error: ErrorCallback | None = None,
    ) -> WatchStream[BundleSet[JwtBundle]] | Watcher[BundleSet[JwtBundle]]:
        stream = self._stream(
            self._stub.FetchJWTBundles,
            workload_pb2.JWTBundlesRequest(),
            lambda r: _bundle_set(jwt_bundles_from_response(r, self.endpoint.address)),
            "FetchJWTBundles",
            on_error,
        )
        return stream if on_update is None else Watcher(stream, on_update, "watch-jwt-bundles")

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the channel; open streams end (watchers stop, iterators finish)."""
        if not self._closed:
            self._closed = True
            self._channel.close()

    def __enter__(self) -> WorkloadApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
