"""One exception tree for everything the SPIRE Server API client raises.

    SpireServerError                 (anything from this package)
    ├── SpireClientConfigError       bad client configuration (address, sources)
    ├── SpireValidationError         bad input caught before any RPC (also a ValueError)
    └── SpireApiError                the server (or gRPC) refused; keeps .code and .message
        ├── InvalidArgumentError
        ├── NotFoundError
        ├── AlreadyExistsError
        ├── PermissionDeniedError
        ├── UnauthenticatedError
        ├── FailedPreconditionError
        ├── ResourceExhaustedError
        ├── UnavailableError
        ├── DeadlineExceededError
        └── InternalError

Per-item failures of batch calls are not raised: they come back as `BatchItem.error`
(a `SpireApiError`), and `BatchResult.raise_for_errors()` raises the first one.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from spire_fabric.errors import SpireFabricError

if TYPE_CHECKING:
    # gRPC is imported where a status is read, not here: a local `deploy plan` imports
    # these errors (through the entry model) but talks to no server, and gRPC with its
    # protobuf stubs was a tenth of a 50k-registration plan's CPU.
    import grpc

__all__ = [
    "AlreadyExistsError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "SpireApiError",
    "SpireClientConfigError",
    "SpireServerError",
    "SpireValidationError",
    "UnauthenticatedError",
    "UnavailableError",
    "error_from_code",
    "error_from_rpc",
]


class SpireServerError(SpireFabricError):
    """Base of every error raised by `spire_fabric.server`."""


class SpireClientConfigError(SpireServerError, ValueError):
    """The client cannot be built as configured (address form, missing TLS sources...)."""


class SpireValidationError(SpireServerError, ValueError):
    """Input that SPIRE would reject, caught locally so no RPC is made."""


class SpireApiError(SpireServerError):
    """The server or the gRPC layer answered with a non-OK status.

    `message` is SPIRE's own text (e.g. "failed to convert entry: invalid DNS name");
    `operation` names the RPC (or batch item) it came from.
    """

    code: grpc.StatusCode
    #: Set when a batch stopped on a chunk that failed as a whole: the BatchResult of
    #: the chunks that completed before it (their changes are applied).
    partial_result: Any = None

    def __init__(self, code: grpc.StatusCode, message: str, operation: str = "") -> None:
        self.code = code
        self.message = message
        self.operation = operation
        where = f"{operation}: " if operation else ""
        super().__init__(f"{where}{code.name}: {message}")


class InvalidArgumentError(SpireApiError):
    """SPIRE refused the request as malformed (gRPC INVALID_ARGUMENT)."""


class NotFoundError(SpireApiError):
    """The entry, agent, bundle or relationship does not exist (gRPC NOT_FOUND)."""


class AlreadyExistsError(SpireApiError):
    """Something with that identity exists already (gRPC ALREADY_EXISTS)."""


class PermissionDeniedError(SpireApiError):
    """The caller may not do this, e.g. not an admin SVID (gRPC PERMISSION_DENIED)."""


class UnauthenticatedError(SpireApiError):
    """The caller presented no acceptable credentials (gRPC UNAUTHENTICATED)."""


class FailedPreconditionError(SpireApiError):
    """The server's state does not allow the call now (gRPC FAILED_PRECONDITION)."""


class ResourceExhaustedError(SpireApiError):
    """A server limit was hit (gRPC RESOURCE_EXHAUSTED); retry later or send less."""


class UnavailableError(SpireApiError):
    """The server could not be reached or is not serving (gRPC UNAVAILABLE); retryable."""


class DeadlineExceededError(SpireApiError):
    """The call did not finish within its timeout (gRPC DEADLINE_EXCEEDED)."""


class InternalError(SpireApiError):
    """SPIRE failed internally (gRPC INTERNAL); its log says why."""


# by the status code's name (grpc.StatusCode.X.name): gRPC is not imported to define them
_BY_NAME: dict[str, type[SpireApiError]] = {
    "INVALID_ARGUMENT": InvalidArgumentError,
    "NOT_FOUND": NotFoundError,
    "ALREADY_EXISTS": AlreadyExistsError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "UNAUTHENTICATED": UnauthenticatedError,
    "FAILED_PRECONDITION": FailedPreconditionError,
    "RESOURCE_EXHAUSTED": ResourceExhaustedError,
    "UNAVAILABLE": UnavailableError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "INTERNAL": InternalError,
}


def error_from_code(
    code: grpc.StatusCode | int, message: str, operation: str = ""
) -> SpireApiError:
    """The typed error for a status code (an int is how batch results carry it)."""
    import grpc

    if isinstance(code, grpc.StatusCode):
        status = code
    else:
        status = _statuses().get(code, grpc.StatusCode.UNKNOWN)
    return _BY_NAME.get(status.name, SpireApiError)(status, message, operation)


@functools.cache
def _statuses() -> dict[int, grpc.StatusCode]:
    """gRPC's status codes by number (batch results carry numbers), made once."""
    import grpc

    return {c.value[0]: c for c in grpc.StatusCode}


def error_from_rpc(err: grpc.RpcError, operation: str) -> SpireApiError:
    """Map a gRPC failure (sync or aio) to our tree, keeping SPIRE's message verbatim."""
    import grpc

    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    details = (err.details() if callable(getattr(err, "details", None)) else str(err)) or ""
    if code == grpc.StatusCode.UNIMPLEMENTED and details.startswith(
        "unknown service spire.api.server."
    ):
        # what an agent's socket (or any other gRPC server) answers: say so, not only
        # SPIRE's words, since the two sockets look alike on disk
        details += (" (this endpoint does not serve the SPIRE Server API: an agent's "
                    "socket? the server's is its socket_path)")  # fmt: skip
    return error_from_code(code or grpc.StatusCode.UNKNOWN, details, operation)
