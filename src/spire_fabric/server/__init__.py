"""SPIRE Server API client: entries, agents, join tokens, bundles, federation, SVIDs, debug.

(The Agent admin API client is `spire_fabric.agent`; entries as code -- the YAML format,
`apply_entries` and its CLI -- is `spire_fabric.entries`.)

    from spire_fabric.server import SpireServerClient, Entry

    with SpireServerClient("unix:///tmp/spire-server/private/api.sock") as spire:
        spire.create_entries([Entry("spiffe://example.org/web", parent, ["unix:uid:1000"])])
        for entry in spire.list_entries(selectors=["unix:uid:1000"]):
            ...

`AsyncSpireServerClient` is the same API for asyncio (the hand-written one; the blocking
client is generated from it by scripts/gen-sync). Errors form one tree rooted at
`SpireServerError` (see `spire_fabric.server._errors`).
"""

import warnings as _warnings
from typing import TYPE_CHECKING
from typing import Any as _Any

from spire_fabric._lazy import lazy_attributes as _lazy_attributes
from spire_fabric.server._errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SpireApiError,
    SpireClientConfigError,
    SpireServerError,
    SpireValidationError,
    UnauthenticatedError,
    UnavailableError,
)
from spire_fabric.server._models import (
    AgentList,
    AttestedAgent,
    AuthorityState,
    AuthorityStates,
    BatchItem,
    BatchResult,
    Bundle,
    CertInfo,
    Entry,
    EntryField,
    EntryList,
    FederationRelationship,
    HttpsSpiffeProfile,
    HttpsWebProfile,
    JoinToken,
    JwtAuthority,
    LoggerLevels,
    LogLevel,
    MatchBehavior,
    MintedJwtSvid,
    MintedX509Svid,
    Selector,
    SelectorLike,
    ServerInfo,
    X509Authority,
)

if TYPE_CHECKING:
    from spire_fabric.server._async_client import AsyncSpireServerClient
    from spire_fabric.server._client import SpireServerClient
    from spire_fabric.server._retry import RetryPolicy

# The clients load on first use (PEP 562): they bring gRPC, protobuf and every API's stubs,
# and a local `deploy plan` uses the entry model and these errors without talking to a
# server. The models and errors stay eager (they are small and used everywhere).
_CLIENTS = {
    "AsyncSpireServerClient": "spire_fabric.server._async_client",
    "SpireServerClient": "spire_fabric.server._client",
    "RetryPolicy": "spire_fabric.server._retry",
}
_lazy_getattr, __dir__ = _lazy_attributes(__name__, globals(), _CLIENTS)

# Names that moved out of this package; importing them from here still works for one
# release, with a DeprecationWarning naming the new home.
_MOVED = {
    "AgentInfo": "spire_fabric.agent",
    "AsyncSpireAgentClient": "spire_fabric.agent",
    "AsyncSubscription": "spire_fabric.agent",
    "SpireAgentClient": "spire_fabric.agent",
    "Subscription": "spire_fabric.agent",
    "X509SvidUpdate": "spire_fabric.agent",
    "ApplyResult": "spire_fabric.entries",
    "EntryChange": "spire_fabric.entries",
    "EntryPlan": "spire_fabric.entries",
    "apply_entries": "spire_fabric.entries",
    "apply_entries_async": "spire_fabric.entries",
    "owned_entry_id": "spire_fabric.entries",
    "plan_entries": "spire_fabric.entries",
}


# Names that meant a second class besides the canonical one (identity.X509Svid, ...);
# the old name still works for one release, with a DeprecationWarning naming the new one.
_RENAMED = {
    "Agent": "AttestedAgent",
    "JwtSvid": "MintedJwtSvid",
    "X509Svid": "MintedX509Svid",
}


def __getattr__(name: str) -> _Any:
    if name in _CLIENTS:
        return _lazy_getattr(name)
    new_name = _RENAMED.get(name)
    if new_name is not None:
        _warnings.warn(
            f"spire_fabric.server.{name} is renamed spire_fabric.server.{new_name} (the "
            f"old name goes away in the next release)",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[new_name]
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _warnings.warn(
        f"spire_fabric.server.{name} moved to {home}.{name}; import it from there "
        "(the old path goes away in the next release)",
        DeprecationWarning,
        stacklevel=2,
    )
    import importlib

    return getattr(importlib.import_module(home), name)


__all__ = [
    "AgentList",
    "AlreadyExistsError",
    "AsyncSpireServerClient",
    "AttestedAgent",
    "AuthorityState",
    "AuthorityStates",
    "BatchItem",
    "BatchResult",
    "Bundle",
    "CertInfo",
    "DeadlineExceededError",
    "Entry",
    "EntryField",
    "EntryList",
    "FailedPreconditionError",
    "FederationRelationship",
    "HttpsSpiffeProfile",
    "HttpsWebProfile",
    "InternalError",
    "InvalidArgumentError",
    "JoinToken",
    "JwtAuthority",
    "LogLevel",
    "LoggerLevels",
    "MatchBehavior",
    "MintedJwtSvid",
    "MintedX509Svid",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "Selector",
    "SelectorLike",
    "ServerInfo",
    "SpireApiError",
    "SpireClientConfigError",
    "SpireServerClient",
    "SpireServerError",
    "SpireValidationError",
    "UnauthenticatedError",
    "UnavailableError",
    "X509Authority",
]
