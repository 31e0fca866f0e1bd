"""State and helpers common to `SpireServerClient` and `AsyncSpireServerClient`."""

from __future__ import annotations

import time
from typing import Any

import grpc

from spire_fabric.identity import TrustDomain, X509BundleSource, X509SvidSource
from spire_fabric.proto.spire.api.server.agent.v1 import agent_pb2_grpc
from spire_fabric.proto.spire.api.server.bundle.v1 import bundle_pb2_grpc
from spire_fabric.proto.spire.api.server.debug.v1 import debug_pb2_grpc
from spire_fabric.proto.spire.api.server.entry.v1 import entry_pb2_grpc
from spire_fabric.proto.spire.api.server.localauthority.v1 import localauthority_pb2_grpc
from spire_fabric.proto.spire.api.server.logger.v1 import logger_pb2_grpc
from spire_fabric.proto.spire.api.server.svid.v1 import svid_pb2_grpc
from spire_fabric.proto.spire.api.server.trustdomain.v1 import trustdomain_pb2_grpc
from spire_fabric.server._calls import Call
from spire_fabric.server._errors import (
    DeadlineExceededError,
    SpireApiError,
    SpireClientConfigError,
    error_from_code,
    error_from_rpc,
)
from spire_fabric.server._requests import DEFAULT_PAGE_SIZE, ServerApi
from spire_fabric.server._retry import RetryPolicy
from spire_fabric.server._transport import ChannelSpec, build_channel_spec

DEFAULT_TIMEOUT = 30.0

_STUBS: dict[str, Any] = {
    "agent": agent_pb2_grpc.AgentStub,
    "bundle": bundle_pb2_grpc.BundleStub,
    "debug": debug_pb2_grpc.DebugStub,
    "entry": entry_pb2_grpc.EntryStub,
    "localauthority": localauthority_pb2_grpc.LocalAuthorityStub,
    "logger": logger_pb2_grpc.LoggerStub,
    "svid": svid_pb2_grpc.SVIDStub,
    "trustdomain": trustdomain_pb2_grpc.TrustDomainStub,
}


class ClientBase:
    """Configuration, channel spec, stubs and deadlines; no I/O of its own."""

    def __init__(
        self,
        address: str,
        *,
        svid_source: X509SvidSource | None = None,
        bundle_source: X509BundleSource | None = None,
        server_trust_domain: TrustDomain | str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        if timeout <= 0:
            raise SpireClientConfigError(f"timeout must be > 0 seconds, got {timeout}")
        self.address = address
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._ops = ServerApi(page_size)
        self._sources = (svid_source, bundle_source, server_trust_domain)
        self._spec = self._new_spec()
        self._stubs: dict[str, Any] = {}
        self._closed = False

    def _new_spec(self) -> ChannelSpec:
        svid_source, bundle_source, td = self._sources
        return build_channel_spec(
            self.address,
            svid_source=svid_source,
            bundle_source=bundle_source,
            server_trust_domain=td,
        )

    def _make_stubs(self, channel: Any) -> None:
        self._stubs = {name: cls(channel) for name, cls in _STUBS.items()}

    def _deadline(self, timeout: float | None) -> float:
        budget = self.timeout if timeout is None else timeout
        if budget <= 0:
            raise SpireClientConfigError(f"timeout must be > 0 seconds, got {budget}")
        return time.monotonic() + budget

    def _method(self, call: Call[Any], deadline: float) -> tuple[Any, float]:
        if self._closed:
            raise SpireClientConfigError(f"the client for {self.address} is closed")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceededError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "deadline passed before the call could be (re)sent",
                call.name,
            )
        return getattr(self._stubs[call.service], call.method), remaining

    def _rpc_error(self, err: grpc.RpcError, call: Call[Any]) -> SpireApiError:
        error = error_from_rpc(err, call.name)
        tunnel = self._spec.tunnel
        if error.code == grpc.StatusCode.UNAVAILABLE and tunnel and tunnel.last_error:
            error = error_from_code(
                error.code,
                f"{error.message} (TLS to {self.address}: {tunnel.last_error})",
                call.name,
            )
        return error

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address!r})"
