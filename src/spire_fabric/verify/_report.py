"""The verification report: one row per check, a table for people and JSON for machines."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from spire_fabric.errors import SpireFabricError
from spire_fabric.server import DeadlineExceededError, UnavailableError

# A Server API call that timed out or found no connection is made once more, on a new
# connection, before the check is red: on Kubernetes each call rides a port-forward stream
# (API server, kubelet, container runtime) that a busy node can stall for seconds where the
# next stream is instant. A server really gone fails both tries; the detail says when the
# first one failed, so a flaky path shows in the report instead of hiding.
_TRIED_AGAIN = (DeadlineExceededError, UnavailableError)


class CheckFailed(SpireFabricError):
    """Raised inside a check with the reason shown in the report."""


@dataclass(frozen=True)
class CheckResult:
    """One check. `id` is stable (`agent-live:downstream-agent-1`) so tests and scripts
    can assert on exactly which checks failed."""

    id: str
    title: str
    ok: bool
    detail: str
    seconds: float = 0.0


@dataclass(frozen=True)
class Report:
    """The checks of one `verify` run, in order, with their results."""

    topology: str
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        """The checks that failed, in order."""
        return [c for c in self.checks if not c.ok]

    def get(self, check_id: str) -> CheckResult:
        """The result of the check with this id (e.g. ``datastore:spire-upstream-server``)."""
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)

    def __repr__(self) -> str:
        passed = sum(1 for c in self.checks if c.ok)
        return f"Report({self.topology!r}: {passed} passed, {len(self.checks) - passed} failed)"

    def _repr_html_(self) -> str:
        from spire_fabric import _html

        return _html.report(self)

    def to_json(self) -> str:
        """The report as JSON, every detail whole (what ``verify --output json`` prints)."""
        return json.dumps(
            {
                "topology": self.topology,
                "ok": self.ok,
                "checks": [asdict(c) for c in self.checks],
            },
            indent=2,
        )


def run_check(check_id: str, title: str, fn: Callable[[], str]) -> CheckResult:
    """Run one check: its detail on success, its reason (or the unexpected error) on failure;
    a check never crashes the report."""
    start = time.monotonic()
    first: str | None = None
    for _ in range(2):
        try:
            detail = fn()
            ok = True
        except CheckFailed as err:
            detail, ok = str(err), False
        except _TRIED_AGAIN as err:
            detail, ok = f"{type(err).__name__}: {err}", False
            if first is None:
                first = detail
                continue
        except Exception as err:
            detail, ok = f"{type(err).__name__}: {err}", False
        break
    if first is not None:
        detail = f"{detail} (second try; the first: {first})"
    return CheckResult(check_id, title, ok, detail, round(time.monotonic() - start, 3))
