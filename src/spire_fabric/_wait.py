"""`wait_until`: the one deadline loop of spire_fabric and its tests.

Every "poll until something is true or time is up" in the project means the same thing: ask
a probe, treat a probe that raises as "not yet", give up early if the thing waited on can no
longer become true (its process exited), and on timeout say what was awaited and what the
last probe saw. Written once here so each of those waits reports failure the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from spire_fabric.errors import SpireFabricError

T = TypeVar("T")

__all__ = ["WaitTimeout", "wait_until"]


class WaitTimeout(SpireFabricError, TimeoutError):
    """What was awaited did not become true in time (or could no longer become true)."""


def wait_until(
    probe: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.2,
    abort: Callable[[], str | None] | None = None,
    error: Callable[[str], BaseException] = WaitTimeout,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """Call `probe` until it returns something truthy, and return that.

    A probe that raises one of `retry_on` counts as "not yet" (a server still starting
    refuses connections); the exception is kept as the last result. `abort`, if given, is
    asked after each failed probe and returns a reason to stop waiting at once (None to go
    on). On timeout or abort, `error(message)` is raised; the message names `what`, the time
    waited and the last probe result, so the failure says what was expected and what was seen.
    """
    deadline = time.monotonic() + timeout
    last: object = "never probed"
    while True:
        try:
            result = probe()
        except retry_on as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if result:
                return result
            last = result
        if abort is not None:
            reason = abort()
            if reason:
                raise error(f"{what}: {reason} (last probe: {_shown(last)})")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise error(f"{what}: not true after {timeout:g} s (last probe: {_shown(last)})")
        time.sleep(min(interval, remaining))


def _shown(last: object) -> str:
    text = last if isinstance(last, str) else repr(last)
    return text if len(text) <= 300 else text[:297] + "..."
