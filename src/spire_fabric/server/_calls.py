"""What a client call is, independent of how it is sent (sync or asyncio).

The sync and async clients differ only in how they send a `Call`; building the request,
deciding whether a retry is safe, and turning the response into models live here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from spire_fabric.server._errors import SpireApiError, error_from_code
from spire_fabric.server._models import BatchItem, BatchResult

T = TypeVar("T")
R = TypeVar("R")

Outcome = tuple["T | None", "SpireApiError | None"]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One unary RPC: `service`/`method` name the stub attribute.

    `idempotent` is the retry rule: only calls that can be repeated without changing the
    result are retried after a transient failure. Non-idempotent calls are sent once, but
    with gRPC's wait-for-ready so a server that is restarting delays them instead of
    failing them before they were ever sent.
    """

    service: str
    method: str
    request: Any
    parse: Callable[[Any], T]
    idempotent: bool

    @property
    def name(self) -> str:
        return f"{self.service}.{self.method}"


@dataclass(frozen=True)
class Paged(Generic[T]):
    """A listing RPC with page tokens; `page(token)` builds the call for one page.

    A page's call returns its items as received (protobuf messages) and the next token;
    `convert` makes models of those items. Kept apart so that a client asks for the next
    page as soon as it has the token, and the server reads it while this page is converted.
    """

    page: Callable[[str], Call[tuple[Sequence[Any], str]]]
    convert: Callable[[Sequence[Any]], list[T]]


@dataclass(frozen=True)
class Batch(Generic[T]):
    """A batch RPC split into chunks; each chunk's parse yields outcomes in input order."""

    chunks: Sequence[Call[list[Outcome[T]]]]

    def merge(self, done: list[list[Outcome[T]]]) -> BatchResult[T]:
        items: list[BatchItem[T]] = []
        for outcomes in done:
            for value, error in outcomes:
                items.append(BatchItem(len(items), value, error))
        return BatchResult(tuple(items))

    def fail(self, err: SpireApiError, done: list[list[Outcome[T]]]) -> SpireApiError:
        """The error for a chunk RPC that failed as a whole, with earlier chunks' results."""
        err.partial_result = self.merge(done) if done else None
        return err


def status_outcome(
    status: Any, value: T | None, operation: str
) -> tuple[T | None, SpireApiError | None]:
    """A batch item's (value, error) from SPIRE's per-item `types.Status`."""
    if status.code == 0:
        return value, None
    return value, error_from_code(status.code, status.message, operation)


def chunked(items: Sequence[R], max_items: int, max_bytes: int) -> list[list[R]]:
    """Split protobuf messages so no request exceeds either limit (order kept).

    SPIRE 1.13 sets no per-batch item limit (pkg/server/api/entry/v1 loops over whatever
    it gets); the hard limit is gRPC's 4 MiB default receive size on the server, so
    chunks are bounded by encoded size, and by count to keep each RPC short.
    """
    chunks: list[list[R]] = []
    current: list[R] = []
    size = 0
    for item in items:
        item_size = item.ByteSize() + 8  # type: ignore[attr-defined]
        if current and (len(current) >= max_items or size + item_size > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        chunks.append(current)
    return chunks
