"""Durations as people write them in SPIRE configs ("6h", "30m", "1h30m").

The same spelling goes into the YAML and, unchanged, into the HCL: SPIRE parses TTLs with
Go's ``time.ParseDuration``, which has no day unit, so neither do we.
"""

from __future__ import annotations

import re
from datetime import timedelta

from spire_fabric.topology._errors import shown

_PART = re.compile(r"(\d+)(h|m|s)")
_UNITS = {"h": 3600, "m": 60, "s": 1}
# Go's time.Duration is int64 nanoseconds: ParseDuration refuses anything longer.
_GO_MAX_SECONDS = (2**63 - 1) // 10**9


def parse_duration(text: str) -> timedelta:
    """Parse "6h", "30m", "1h30m", "90s"; refuse anything Go's ParseDuration would read
    differently (fractions, days, negative values)."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"expected a duration like '6h' or '30m', got {shown(text)}")
    pos = 0
    seconds = 0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        digits = match.group(1)
        if len(digits) > 12:  # before int(): a 5,000-digit number is refused, not converted
            raise ValueError(f"duration {shown(text)} is longer than Go can represent")
        seconds += int(digits) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(
            f"expected a duration like '6h', '30m' or '1h30m' (units h, m, s), got {shown(text)}"
        )
    if seconds > _GO_MAX_SECONDS:
        raise ValueError(
            f"duration {shown(text)} is longer than Go can represent (at most 2562047h47m16s)"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Canonical spelling, so a dump is byte-stable: largest units first, zeros dropped."""
    total = int(value.total_seconds())
    if total < 0 or timedelta(seconds=total) != value:
        raise ValueError(f"duration must be a whole, non-negative number of seconds: {value!r}")
    if total == 0:
        return "0s"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return "".join(parts)
