"""What the sync and asyncio clients share: configuration, requests, error mapping.

Both clients are one design (as httpx's Client/AsyncClient); only the I/O differs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from spire_fabric.identity import SpiffeId

from ._backoff import BackoffPolicy
from ._endpoint import WorkloadEndpoint, resolve_endpoint
from ._errors import (
    JwtSvidRejectedError,
    NoIdentityIssuedError,
    WorkloadApiClosedError,
    WorkloadApiError,
    WorkloadApiUnavailableError,
)

logger = logging.getLogger("spire_fabric.workload")

# The Workload API spec: every request carries this header, or the agent refuses it
# (SPIRE: InvalidArgument "security header missing from request"). Passed as plain
# metadata rather than through a client interceptor, which costs a Python hop per call.
METADATA = (("workload.spiffe.io", "true"),)

CHANNEL_OPTIONS = [
    # A TCP Workload API is on a local IP; an http(s)_proxy variable must not reroute it.
    ("grpc.enable_http_proxy", 0),
    # gRPC's default reconnect backoff grows to 120 s; an agent restart takes seconds.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]

# Codes after which retrying the same request cannot help (go-spiffe handleWatchError).
FATAL_STREAM_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT})

ErrorCallback = Callable[[WorkloadApiError], None]


class ClientBase:
    """Configuration and helpers shared by WorkloadApiClient and AsyncWorkloadApiClient."""

    def __init__(
        self,
        endpoint: str | WorkloadEndpoint | None,
        *,
        timeout: float,
        wait_for_socket: float,
        backoff: BackoffPolicy | None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if wait_for_socket < 0:
            raise ValueError(f"wait_for_socket must be >= 0 seconds, got {wait_for_socket}")
        self.endpoint = resolve_endpoint(endpoint)
        self.timeout = timeout
        self.wait_for_socket = wait_for_socket
        self.backoff = backoff or BackoffPolicy()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise WorkloadApiClosedError(
                f"Workload API client for {self.endpoint} is closed",
                endpoint=self.endpoint.address,
            )

    def _socket_present(self) -> bool:
        path = self.endpoint.socket_path
        return path is None or os.path.exists(path)

    def _socket_missing_error(self) -> WorkloadApiUnavailableError:
        return WorkloadApiUnavailableError(
            f"Workload API socket {self.endpoint.socket_path} does not exist (waited "
            f"{self.wait_for_socket:g}s); is the SPIRE agent running, and is its socket_path "
            f"what SPIFFE_ENDPOINT_SOCKET / endpoint= say?",
            endpoint=self.endpoint.address,
        )

    def _error(
        self, err: grpc.RpcError, what: str, timeout: float | None = None
    ) -> WorkloadApiError:
        return error_from_rpc(err, self.endpoint, what, closed=self._closed, timeout=timeout)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"{type(self).__name__}({self.endpoint.address!r}, {state})"


def error_from_rpc(
    err: grpc.RpcError,
    endpoint: WorkloadEndpoint,
    what: str,
    *,
    closed: bool = False,
    timeout: float | None = None,
) -> WorkloadApiError:
    """Turn a gRPC status into our error tree, naming the endpoint and what was asked."""
    code: grpc.StatusCode = err.code()
    details: str = err.details() or ""
    where = endpoint.socket_path or endpoint.address
    kw: dict[str, Any] = {"endpoint": endpoint.address, "code": code}
    if code == grpc.StatusCode.PERMISSION_DENIED and "no identity issued" in details:
        return NoIdentityIssuedError(
            f"{what}: no identity issued by the SPIRE agent at {where}: no registration entry "
            f"matches this workload (pid {os.getpid()}, uid {os.getuid()}); create an entry whose "
            "parent is that agent and whose selectors match this process, then allow the agent "
            "a sync interval (~5 s) to pick it up",
            **kw,
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        return WorkloadApiUnavailableError(
            f"{what}: Workload API at {where} is unavailable: {details}", **kw
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        limit = f" within {timeout:g}s" if timeout is not None else ""
        return WorkloadApiUnavailableError(
            f"{what}: Workload API at {where} did not answer{limit} ({details})", **kw
        )
    if code == grpc.StatusCode.CANCELLED and closed:
        return WorkloadApiClosedError(f"{what}: the Workload API client was closed", **kw)
    return WorkloadApiError(f"{what} failed at {where}: {code.name}: {details}", **kw)


def validation_error(
    err: grpc.RpcError, endpoint: WorkloadEndpoint, audience: str, *, closed: bool
) -> WorkloadApiError:
    """ValidateJWTSVID answers InvalidArgument for every token it refuses."""
    if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return JwtSvidRejectedError(
            f"the SPIRE agent at {endpoint.socket_path or endpoint.address} rejected the "
            f"JWT-SVID for audience {audience!r}: {err.details()}",
            endpoint=endpoint.address,
            code=grpc.StatusCode.INVALID_ARGUMENT,
        )
    return error_from_rpc(err, endpoint, "ValidateJWTSVID", closed=closed)


def audiences(audience: str | Iterable[str], extra: Iterable[str]) -> tuple[str, ...]:
    """The requested audiences, first one first, without duplicates; none may be empty.

    ``audience`` may also be a list or tuple of them (``fetch_jwt_svid(["a", "b"])`` is
    ``fetch_jwt_svid("a", "b")``)."""
    if isinstance(audience, (list, tuple)):
        if not audience:
            raise ValueError("JWT-SVID audiences: give at least one audience")
        requested = (*audience, *extra)
    else:
        requested = (audience, *extra)
    for a in requested:
        if not isinstance(a, str) or not a:
            raise ValueError(
                f"JWT-SVID audiences must be non-empty strings (as audience, *extra_audiences"
                f" or one list of them), got {a!r}"
            )
    return tuple(dict.fromkeys(requested))


def subject_string(subject: SpiffeId | str | None) -> str:
    if subject is None:
        return ""
    return str(subject if isinstance(subject, SpiffeId) else SpiffeId.parse(subject))


def report(error: WorkloadApiError, on_error: ErrorCallback | None) -> None:
    """Every stream error is logged and handed to on_error: a watch never fails silently."""
    logger.warning("%s", error)
    if on_error is None:
        return
    try:
        on_error(error)
    except Exception:
        logger.exception("on_error callback raised while handling: %s", error)
