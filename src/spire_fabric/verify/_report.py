"""The verification report: one row per check, a table for people and JSON for machines."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from spire_fabric.errors import SpireFabricError


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
