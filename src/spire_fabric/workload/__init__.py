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

from typing import TYPE_CHECKING

from spire_fabric._lazy import lazy_attributes

if TYPE_CHECKING:
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

# Each name loads its module on first use (PEP 562): the clients bring gRPC and the
# Workload API's protobuf stubs, and a module that wants only SOCKET_ENV or X509Context's
# type (the Kubernetes rendering, a local `deploy plan`) must not pay for them.
_LAZY = {
    "AsyncBundleSource": "._async_sources",
    "AsyncJwtSource": "._async_sources",
    "AsyncWatchStream": "._async_watch",
    "AsyncWatcher": "._async_watch",
    "AsyncWorkloadApiClient": "._async_client",
    "AsyncX509Source": "._async_sources",
    "BackoffPolicy": "._backoff",
    "BundleSource": "._sources",
    "InvalidEndpointError": "._errors",
    "JwtSource": "._sources",
    "JwtSvidRejectedError": "._errors",
    "NoIdentityIssuedError": "._errors",
    "NoMatchingSvidError": "._errors",
    "SOCKET_ENV": "._endpoint",
    "SourceNotReadyError": "._errors",
    "WatchStream": "._watch",
    "Watcher": "._watch",
    "WorkloadApiClient": "._client",
    "WorkloadApiClosedError": "._errors",
    "WorkloadApiError": "._errors",
    "WorkloadApiResponseError": "._errors",
    "WorkloadApiUnavailableError": "._errors",
    "WorkloadEndpoint": "._endpoint",
    "X509Context": "._convert",
    "X509Source": "._sources",
    "X509SvidPicker": "._pickers",
    "parse_endpoint": "._endpoint",
    "pick_by_hint": "._pickers",
    "pick_by_id": "._pickers",
    "pick_first": "._pickers",
    "resolve_endpoint": "._endpoint",
}

__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)


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
