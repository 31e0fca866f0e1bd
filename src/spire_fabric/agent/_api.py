"""The agent admin API (Delegated Identity, Debug, Logger) without I/O: models, request
building, response parsing and client state shared by `AsyncSpireAgentClient` and its
generated blocking twin `SpireAgentClient`.

Who may call: the admin socket (`admin_socket_path`) serves Debug to anyone who can open
it, but Delegated Identity only to an *authorized delegate*. SPIRE 1.13 decides that
per call (pkg/agent/api/delegatedidentity/v1, `isCallerAuthorized`): it attests the
CALLING PROCESS through the socket's peer credentials with the agent's workload
attestors, matches the resulting selectors against the entries the agent holds, and
accepts the caller only if one of those entries' SPIFFE IDs is in the agent's
`authorized_delegates`. So the process running the client needs a registration entry
(under that agent) whose SPIFFE ID is listed there; otherwise PermissionDeniedError
("no identity issued" or "caller not configured as an authorized delegate").

Version note: the agent Logger service exists only from SPIRE 1.15.2; older agents
(the pinned 1.13.3 included) answer UNIMPLEMENTED, raised as `SpireApiError` whose
message says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import grpc

from spire_fabric.identity import (
    IdentityError,
    JwtBundle,
    JwtSvid,
    SpiffeId,
    TrustDomain,
    X509Bundle,
    X509Svid,
    parse_insecure_jwt_svid,
)
from spire_fabric.proto.spire.api.agent.debug.v1 import debug_pb2, debug_pb2_grpc
from spire_fabric.proto.spire.api.agent.delegatedidentity.v1 import (
    delegatedidentity_pb2 as di_pb2,
)
from spire_fabric.proto.spire.api.agent.delegatedidentity.v1 import (
    delegatedidentity_pb2_grpc as di_pb2_grpc,
)
from spire_fabric.proto.spire.api.agent.logger.v1 import logger_pb2, logger_pb2_grpc
from spire_fabric.server import _convert as cv
from spire_fabric.server._calls import Call
from spire_fabric.server._client_config import DEFAULT_TIMEOUT, ClientBase
from spire_fabric.server._errors import (
    SpireApiError,
    SpireClientConfigError,
    SpireValidationError,
    error_from_code,
)
from spire_fabric.server._models import (
    CertInfo,
    LoggerLevels,
    LogLevel,
    SelectorLike,
    selectors_arg,
)
from spire_fabric.server._retry import RetryPolicy
from spire_fabric.server._transport import ChannelSpec, build_channel_spec, is_unix

__all__ = ["AgentApi", "AgentClientBase", "AgentInfo", "X509SvidUpdate"]

_AGENT_STUBS: dict[str, Any] = {
    "delegatedidentity": di_pb2_grpc.DelegatedIdentityStub,
    "debug": debug_pb2_grpc.DebugStub,
    "logger": logger_pb2_grpc.LoggerStub,
}


# ---- models ----------------------------------------------------------------------------


@dataclass(frozen=True)
class X509SvidUpdate:
    """One Delegated Identity update: every X.509-SVID the selectors are entitled to.

    `svids` are `spire_fabric.identity.X509Svid` (chain, private key, hint) ready for TLS;
    `federates_with` are the trust domains whose bundles these SVIDs may trust. An empty
    `svids` means no entry matches (yet): the agent keeps the stream open and sends a new
    update when that changes.
    """

    svids: tuple[X509Svid, ...]
    federates_with: tuple[TrustDomain, ...] = ()


@dataclass(frozen=True)
class AgentInfo:
    """The agent's debug view of itself (`GetInfo`; SPIRE caches it for 5 seconds)."""

    svid_chain: tuple[CertInfo, ...]  # the agent's own SVID, leaf first, up to its root
    uptime_seconds: int
    last_sync_success: int  # Unix seconds of the last successful sync with the server
    cached_x509_svids_count: int
    cached_jwt_svids_count: int
    cached_svidstore_x509_svids_count: int

    @property
    def agent_id(self) -> SpiffeId | None:
        """The agent's SPIFFE ID (the leaf's), e.g. spiffe://td/spire/agent/join_token/..."""
        return self.svid_chain[0].id if self.svid_chain else None


# ---- request building and parsing (no I/O) ---------------------------------------------


def _unusable(what: str, err: Exception, operation: str) -> SpireApiError:
    return error_from_code(
        grpc.StatusCode.INTERNAL, f"the agent sent an unusable {what}: {err}", operation
    )


def _workload(
    selectors: Iterable[SelectorLike] | SelectorLike | None, pid: int | None, what: str
) -> dict[str, Any]:
    """Selectors XOR pid, as SPIRE requires ("must provide either selectors or non-zero
    PID, but not both"), checked before any RPC."""
    if (selectors is None) == (pid is None):
        raise SpireValidationError(f"{what} needs either selectors or pid (exactly one of them)")
    if pid is not None:
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise SpireValidationError(f"{what}: pid must be a positive int, got {pid!r}")
        return {"pid": pid}
    assert selectors is not None
    return {"selectors": cv.selectors_to_proto(selectors_arg(selectors, f"{what} selectors"))}


def _audience(audience: Sequence[str] | str) -> list[str]:
    auds = [audience] if isinstance(audience, str) else list(audience)
    if not auds or any(not isinstance(a, str) or not a for a in auds):
        raise SpireValidationError(
            f"fetch_jwt_svids needs at least one non-empty audience string, got {audience!r}"
        )
    return auds


def _x509_update(msg: di_pb2.SubscribeToX509SVIDsResponse) -> X509SvidUpdate:
    op = "delegatedidentity.SubscribeToX509SVIDs"
    svids = []
    for item in msg.x509_svids:
        try:
            svid = X509Svid.parse_der(
                b"".join(item.x509_svid.cert_chain), item.x509_svid_key, hint=item.x509_svid.hint
            )
        except IdentityError as err:
            raise _unusable("X.509-SVID", err, op) from err
        svids.append(svid)
    try:
        tds = tuple(TrustDomain.parse(td) for td in msg.federates_with)
    except IdentityError as err:
        raise _unusable("federates_with trust domain", err, op) from err
    return X509SvidUpdate(tuple(svids), tds)


def _x509_bundles(msg: di_pb2.SubscribeToX509BundlesResponse) -> dict[TrustDomain, X509Bundle]:
    op = "delegatedidentity.SubscribeToX509Bundles"
    bundles = {}
    for key, der in msg.ca_certificates.items():
        try:
            td = TrustDomain.parse(key)
            bundles[td] = X509Bundle.parse_der(td, der)
        except IdentityError as err:
            raise _unusable(f"X.509 bundle for {key!r}", err, op) from err
    return bundles


def _jwt_bundles(msg: di_pb2.SubscribeToJWTBundlesResponse) -> dict[TrustDomain, JwtBundle]:
    op = "delegatedidentity.SubscribeToJWTBundles"
    bundles = {}
    for key, jwks in msg.bundles.items():
        try:
            td = TrustDomain.parse(key)
            bundles[td] = JwtBundle.parse_jwks(td, jwks)
        except IdentityError as err:
            raise _unusable(f"JWT bundle for {key!r}", err, op) from err
    return bundles


def _agent_info(msg: debug_pb2.GetInfoResponse) -> AgentInfo:
    chain = tuple(
        CertInfo(
            id=cv.id_from_proto(c.id) if c.HasField("id") and c.id.trust_domain else None,
            expires_at=c.expires_at,
            subject=c.subject,
        )
        for c in msg.svid_chain
    )
    return AgentInfo(
        svid_chain=chain,
        uptime_seconds=msg.uptime,
        last_sync_success=msg.last_sync_success,
        cached_x509_svids_count=msg.cached_x509_svids_count,
        cached_jwt_svids_count=msg.cached_jwt_svids_count,
        cached_svidstore_x509_svids_count=msg.cached_svidstore_x509_svids_count,
    )


class AgentApi:
    """Builds every call of the agent admin API; streams are `Call`s read as streams."""

    def __init__(self, set_level: Callable[[LogLevel | str], Call[LoggerLevels]]) -> None:
        self._set_level = set_level

    def subscribe_to_x509_svids(
        self, selectors: Iterable[SelectorLike] | SelectorLike | None, pid: int | None
    ) -> Call[X509SvidUpdate]:
        req = di_pb2.SubscribeToX509SVIDsRequest(
            **_workload(selectors, pid, "subscribe_to_x509_svids")
        )
        return Call("delegatedidentity", "SubscribeToX509SVIDs", req, _x509_update, True)

    def subscribe_to_x509_bundles(self) -> Call[Mapping[TrustDomain, X509Bundle]]:
        req = di_pb2.SubscribeToX509BundlesRequest()
        return Call("delegatedidentity", "SubscribeToX509Bundles", req, _x509_bundles, True)

    def subscribe_to_jwt_bundles(self) -> Call[Mapping[TrustDomain, JwtBundle]]:
        req = di_pb2.SubscribeToJWTBundlesRequest()
        return Call("delegatedidentity", "SubscribeToJWTBundles", req, _jwt_bundles, True)

    def fetch_jwt_svids(
        self,
        audience: Sequence[str] | str,
        selectors: Iterable[SelectorLike] | SelectorLike | None,
        pid: int | None,
    ) -> Call[list[JwtSvid]]:
        auds = _audience(audience)
        req = di_pb2.FetchJWTSVIDsRequest(
            audience=auds, **_workload(selectors, pid, "fetch_jwt_svids")
        )

        def parse(resp: di_pb2.FetchJWTSVIDsResponse) -> list[JwtSvid]:
            # The token comes from the agent over its admin socket, a trusted channel, so
            # its claims are checked but its signature is not (as for the Workload API).
            try:
                return [
                    replace(parse_insecure_jwt_svid(s.token, auds), hint=s.hint) for s in resp.svids
                ]
            except IdentityError as err:
                raise _unusable("JWT-SVID", err, "delegatedidentity.FetchJWTSVIDs") from err

        # Retried: asking again only mints another token for the same identity.
        return Call("delegatedidentity", "FetchJWTSVIDs", req, parse, idempotent=True)

    def get_info(self) -> Call[AgentInfo]:
        return Call("debug", "GetInfo", debug_pb2.GetInfoRequest(), _agent_info, True)

    def get_log_level(self) -> Call[LoggerLevels]:
        req = logger_pb2.GetLoggerRequest()
        return Call("logger", "GetLogger", req, cv.logger_from_proto, idempotent=True)

    def set_log_level(self, level: LogLevel | str) -> Call[LoggerLevels]:
        # Same level rules as the server's SetLogLevel; only the request type differs.
        checked = self._set_level(level).request.new_level
        req = logger_pb2.SetLogLevelRequest(new_level=checked)
        return Call("logger", "SetLogLevel", req, cv.logger_from_proto, idempotent=True)

    def reset_log_level(self) -> Call[LoggerLevels]:
        req = logger_pb2.ResetLogLevelRequest()
        return Call("logger", "ResetLogLevel", req, cv.logger_from_proto, idempotent=True)


class AgentClientBase(ClientBase):
    """`ClientBase` (deadlines, retry, error mapping) pointed at an agent's admin socket."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(address, timeout=timeout, retry=retry)
        self._agent_ops = AgentApi(self._ops.set_log_level)

    def _new_spec(self) -> ChannelSpec:
        if not self.address or not is_unix(self.address):
            raise SpireClientConfigError(
                f"agent admin address {self.address!r} must be a unix socket "
                "('unix:///path/admin.sock' or a path): SPIRE serves the admin API only on "
                "admin_socket_path, and authorizes callers by their process credentials"
            )
        return build_channel_spec(
            self.address, svid_source=None, bundle_source=None, server_trust_domain=None
        )

    def _make_stubs(self, channel: Any) -> None:
        self._stubs = {name: cls(channel) for name, cls in _AGENT_STUBS.items()}

    def _rpc_error(self, err: grpc.RpcError, call: Call[Any]) -> SpireApiError:
        error = super()._rpc_error(err, call)
        if error.code == grpc.StatusCode.UNIMPLEMENTED:
            hint = (
                "the agent Logger service exists from SPIRE 1.15.2 on"
                if call.service == "logger"
                else "this agent does not serve it"
            )
            error = error_from_code(error.code, f"{error.message} ({hint})", call.name)
        return error
