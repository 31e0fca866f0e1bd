"""Reconnect delays for Workload API streams.

Exponential with jitter, capped low (5 s by default): an agent restart is the common cause
of a broken stream and it is back within seconds, so a workload should not sleep for
go-spiffe's 30 s. Jitter keeps a node's workloads from reconnecting in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "BackoffPolicy"]


@dataclass(frozen=True)
class BackoffPolicy:
    """How watchers wait between reconnects: exponential from ``initial`` to ``maximum`` seconds,
    with ``jitter`` (a fraction of each delay) so many workloads do not reconnect in step.
    """

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2  # fraction of the delay, added or removed at random

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial:
            raise ValueError(
                f"BackoffPolicy needs 0 < initial <= maximum, got initial={self.initial}, "
                f"maximum={self.maximum}"
            )
        if self.multiplier < 1:
            raise ValueError(f"BackoffPolicy multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"BackoffPolicy jitter must be in [0, 1), got {self.jitter}")

    def start(self) -> Backoff:
        """A fresh backoff sequence following this policy."""
        return Backoff(self)


class Backoff:
    """The state of one stream's retries; reset after every good message."""

    def __init__(self, policy: BackoffPolicy) -> None:
        self.policy = policy
        self.attempt = 0

    def next(self) -> float:
        p = self.policy
        delay = min(p.initial * p.multiplier**self.attempt, p.maximum)
        self.attempt += 1
        return delay * (1 + random.uniform(-p.jitter, p.jitter))

    def reset(self) -> None:
        self.attempt = 0
