"""The one exception a bad topology raises."""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any

from spire_fabric.errors import SpireFabricError

__all__ = ["Problem", "TopologyError", "shown"]


class _BoundedRepr(reprlib.Repr):
    """reprlib with room for a useful value, and integers that never call int->str on a
    huge number (Python refuses more than 4,300 digits, and the work is quadratic)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = 60
        self.maxother = 60
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxset = self.maxdict = 4

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:
            return f"<integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_REPR = _BoundedRepr()


def shown(value: Any, limit: int = 80) -> str:
    """A repr of ``value`` for an error message, at most ``limit`` characters.

    Why: a message quotes what the user wrote, and what they wrote may be hostile: a YAML
    alias bomb reprs to gigabytes, a 5,000-digit integer cannot be repr'd at all. reprlib
    stops at a few items per level and a few levels, so the cost is bounded too.
    """
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
