"""The one CSV writer of the benchmarks: `scripts/plot-benchmarks` reads what it writes.

Every row carries the machine's 1-minute load average, because other work shares the
cores and a figure measured under load is not the same figure.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load() -> float:
    return os.getloadavg()[0]


def write_rows(name: str, rows: Sequence[Mapping[str, object]]) -> Path:
    """Write ``rows`` to ``benchmarks/results/<name>.csv`` (replacing it) and say where."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path}")
    return path
