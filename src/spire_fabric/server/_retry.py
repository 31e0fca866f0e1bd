"""When and how long a failed RPC is retried (tenacity), shared by both clients.

The rule: only calls marked idempotent (see `_requests.ServerApi`) are retried, only on the
codes in `RetryPolicy.retry_on`, with jittered exponential backoff, and never past
the call's deadline or `RetryPolicy.max_elapsed`, whichever comes first.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
)

from spire_fabric.server._errors import SpireApiError, SpireClientConfigError

# Codes that say "try again later" without the request having been acted on: the server
# is down or restarting (UNAVAILABLE), rate limited (RESOURCE_EXHAUSTED), or a datastore
# transaction conflict was reported as ABORTED.
_TRANSIENT = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED}
)
_MIN_ATTEMPT_S = 0.05


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for idempotent calls. `RetryPolicy.none()` turns retries off."""

    max_elapsed: float = 30.0
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    retry_on: frozenset[grpc.StatusCode] = field(default=_TRANSIENT)

    def __post_init__(self) -> None:
        if self.max_elapsed < 0 or self.initial_backoff < 0 or self.max_backoff < 0:
            raise SpireClientConfigError(f"RetryPolicy values must be >= 0: {self}")

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_elapsed=0.0, retry_on=frozenset())

    def _kwargs(self, deadline: float) -> dict[str, Any]:
        stop_at = min(deadline, time.monotonic() + self.max_elapsed)

        def wait(state: RetryCallState) -> float:
            # Exponential backoff, jittered in [ceiling/2, ceiling], never past the stop time.
            ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (state.attempt_number - 1))
            backoff = random.uniform(ceiling / 2, ceiling)
            return max(0.0, min(backoff, stop_at - time.monotonic() - _MIN_ATTEMPT_S))

        def stop(state: RetryCallState) -> bool:
            return stop_at - time.monotonic() < _MIN_ATTEMPT_S

        def transient(err: BaseException) -> bool:
            return isinstance(err, SpireApiError) and err.code in self.retry_on

        return {"stop": stop, "wait": wait, "retry": retry_if_exception(transient), "reraise": True}

    def sync(self, deadline: float) -> Retrying:
        """The tenacity ``Retrying`` for blocking calls, bounded by ``deadline`` (monotonic)."""
        return Retrying(**self._kwargs(deadline))

    def aio(self, deadline: float) -> AsyncRetrying:
        """The tenacity ``AsyncRetrying`` for asyncio calls, bounded by ``deadline``."""
        return AsyncRetrying(**self._kwargs(deadline))
