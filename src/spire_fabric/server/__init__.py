"""SPIRE Server API client: entries, agents, join tokens, bundles, federation, SVIDs, debug.

    from spire_fabric.server import SpireServerClient, Entry

    with SpireServerClient("unix:///tmp/spire-server/private/api.sock") as spire:
        spire.create_entries([Entry("spiffe://example.org/web", parent, ["unix:uid:1000"])])
        for entry in spire.list_entries(selectors=["unix:uid:1000"]):
            ...

`AsyncSpireServerClient` is the same API for asyncio. Errors form one tree rooted at
`SpireServerError` (see `spire_fabric.server._errors`).
"""

from spire_fabric.server._agent_async_client import AsyncSpireAgentClient, AsyncSubscription
from spire_fabric.server._agent_client import (
    AgentInfo,
    SpireAgentClient,
    Subscription,
    X509SvidUpdate,
)
from spire_fabric.server._async_client import AsyncSpireServerClient
from spire_fabric.server._client import SpireServerClient
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
    Agent,
    BatchItem,
    BatchResult,
    Bundle,
    CertInfo,
    Entry,
    EntryField,
    FederationRelationship,
    HttpsSpiffeProfile,
    HttpsWebProfile,
    JoinToken,
    JwtAuthority,
    JwtSvid,
    LoggerLevels,
    LogLevel,
    MatchBehavior,
    Selector,
    SelectorLike,
    ServerInfo,
    X509Authority,
    X509Svid,
)
from spire_fabric.server._reconcile import (
    ApplyResult,
    EntryChange,
    EntryPlan,
    apply_entries,
    apply_entries_async,
    owned_entry_id,
    plan_entries,
)
from spire_fabric.server._retry import RetryPolicy

__all__ = [
    "Agent",
    "AgentInfo",
    "AlreadyExistsError",
    "ApplyResult",
    "AsyncSpireAgentClient",
    "AsyncSpireServerClient",
    "AsyncSubscription",
    "BatchItem",
    "BatchResult",
    "Bundle",
    "CertInfo",
    "DeadlineExceededError",
    "Entry",
    "EntryChange",
    "EntryField",
    "EntryPlan",
    "FailedPreconditionError",
    "FederationRelationship",
    "HttpsSpiffeProfile",
    "HttpsWebProfile",
    "InternalError",
    "InvalidArgumentError",
    "JoinToken",
    "JwtAuthority",
    "JwtSvid",
    "LogLevel",
    "LoggerLevels",
    "MatchBehavior",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "Selector",
    "SelectorLike",
    "ServerInfo",
    "SpireAgentClient",
    "SpireApiError",
    "SpireClientConfigError",
    "SpireServerClient",
    "SpireServerError",
    "SpireValidationError",
    "Subscription",
    "UnauthenticatedError",
    "UnavailableError",
    "X509Authority",
    "X509Svid",
    "X509SvidUpdate",
    "apply_entries",
    "apply_entries_async",
    "owned_entry_id",
    "plan_entries",
]
