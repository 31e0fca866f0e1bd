"""The one exception tree of the workload package.

::

    WorkloadApiError                 .endpoint, .code (grpc.StatusCode or None)
    ├── InvalidEndpointError         (also a ValueError) the address is not a Workload API URI
    ├── WorkloadApiUnavailableError  socket missing, agent not answering, stream broken
    ├── NoIdentityIssuedError        the agent has no registration entry for this workload
    ├── JwtSvidRejectedError         the agent refused a JWT-SVID in ValidateJWTSVID
    ├── WorkloadApiResponseError     the agent sent something we cannot parse
    ├── NoMatchingSvidError          (also a LookupError) a picker found no SVID it wants
    ├── SourceNotReadyError          a source got no first update in time
    └── WorkloadApiClosedError       the client or source was closed

Messages name the endpoint, because "which agent?" is the first question when a workload
cannot get its identity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spire_fabric.errors import SpireFabricError

if TYPE_CHECKING:
    import grpc

__all__ = [
    "InvalidEndpointError",
    "JwtSvidRejectedError",
    "NoIdentityIssuedError",
    "NoMatchingSvidError",
    "SourceNotReadyError",
    "WorkloadApiClosedError",
    "WorkloadApiError",
    "WorkloadApiResponseError",
    "WorkloadApiUnavailableError",
]


class WorkloadApiError(SpireFabricError):
    """Base of every error raised by spire_fabric.workload."""

    def __init__(
        self, message: str, *, endpoint: str | None = None, code: grpc.StatusCode | None = None
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.code = code


class InvalidEndpointError(WorkloadApiError, ValueError):
    """The Workload API address is malformed or not allowed by the Workload Endpoint spec."""


class WorkloadApiUnavailableError(WorkloadApiError):
    """The agent could not be reached, did not answer in time, or closed a stream."""


class NoIdentityIssuedError(WorkloadApiError):
    """The agent answered PermissionDenied "no identity issued": no entry matches us."""


class JwtSvidRejectedError(WorkloadApiError):
    """The agent's ValidateJWTSVID refused the token (bad signature, audience, expiry...)."""


class WorkloadApiResponseError(WorkloadApiError):
    """A Workload API response could not be turned into SVIDs or bundles."""


class NoMatchingSvidError(WorkloadApiError, LookupError):
    """The workload has SVIDs, but none that the source's picker asked for."""


class SourceNotReadyError(WorkloadApiError):
    """A source did not receive its first update within the time it was given."""


class WorkloadApiClosedError(WorkloadApiError):
    """The client or source was used after close()."""
