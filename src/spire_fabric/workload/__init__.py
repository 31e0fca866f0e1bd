"""The SPIFFE Workload API: clients (sync and asyncio) and always-current identity sources.

Modelled on go-spiffe's ``workloadapi`` package. Errors form one tree rooted at
:class:`WorkloadApiError`::

    WorkloadApiError                 .endpoint, .code (grpc.StatusCode or None)
    ├── InvalidEndpointError         (also a ValueError) the address is not a Workload API URI
    ├── WorkloadApiUnavailableError  socket missing, agent not answering, stream broken
    ├── NoIdentityIssuedError        the agent has no registration entry for this workload
    ├── JwtSvidRejectedError         the agent refused a JWT-SVID in ValidateJWTSVID
    ├── WorkloadApiResponseError     the agent sent something we cannot parse
    ├── NoMatchingSvidError          (also a LookupError) a picker found no SVID it wants
    ├── SourceNotReadyError          a source got no first update in time
    └── WorkloadApiClosedError       the client or source was used after close()
"""

from ._async_client import AsyncWorkloadApiClient
from ._async_sources import AsyncBundleSource, AsyncJwtSource, AsyncX509Source
from ._async_watch import AsyncWatcher, AsyncWatchStream
from ._backoff import BackoffPolicy
from ._client import WorkloadApiClient
from ._convert import X509Context
from ._endpoint import SOCKET_ENV, WorkloadEndpoint, parse_endpoint, resolve_endpoint
from ._errors import (
    InvalidEndpointError,
    JwtSvidRejectedError,
    NoIdentityIssuedError,
    NoMatchingSvidError,
    SourceNotReadyError,
    WorkloadApiClosedError,
    WorkloadApiError,
    WorkloadApiResponseError,
    WorkloadApiUnavailableError,
)
from ._pickers import X509SvidPicker, pick_by_hint, pick_by_id, pick_first
from ._sources import BundleSource, JwtSource, X509Source
from ._watch import Watcher, WatchStream

__all__ = [
    "SOCKET_ENV",
    "AsyncBundleSource",
    "AsyncJwtSource",
    "AsyncWatchStream",
    "AsyncWatcher",
    "AsyncWorkloadApiClient",
    "AsyncX509Source",
    "BackoffPolicy",
    "BundleSource",
    "InvalidEndpointError",
    "JwtSource",
    "JwtSvidRejectedError",
    "NoIdentityIssuedError",
    "NoMatchingSvidError",
    "SourceNotReadyError",
    "WatchStream",
    "Watcher",
    "WorkloadApiClient",
    "WorkloadApiClosedError",
    "WorkloadApiError",
    "WorkloadApiResponseError",
    "WorkloadApiUnavailableError",
    "WorkloadEndpoint",
    "X509Context",
    "X509Source",
    "X509SvidPicker",
    "parse_endpoint",
    "pick_by_hint",
    "pick_by_id",
    "pick_first",
    "resolve_endpoint",
]
