"""The one exception a bad topology raises."""

from __future__ import annotations

from dataclasses import dataclass

from spire_fabric.errors import SpireFabricError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a topology: where (a field path) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class TopologyError(SpireFabricError, ValueError):
    """Every problem found in a topology, reported at once so a user fixes them in one pass.

    ``problems`` holds each :class:`Problem`; ``str(err)`` lists them one per line, each
    starting with a field path such as ``servers[spire-upstream-server].federation.profile``.
    """

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"topology: {count} {noun}:\n{lines}")
