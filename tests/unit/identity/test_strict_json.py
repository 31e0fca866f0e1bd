"""The strict JSON reader under JWT headers/claims and bundles, tested directly."""

from __future__ import annotations

import time

import pytest

from spire_fabric.identity._strict_json import MAX_DEPTH, StrictJsonError, loads_strict


@pytest.mark.parametrize(
    ("document", "accepted"),
    [
        ("[" * MAX_DEPTH + "]" * MAX_DEPTH, True),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), False),
        ('{"a": "' + "[" * 100 + '"}', True),  # brackets inside a string do not nest
        ('["\\\\", ' + "[" * 70 + "]" * 70 + "]", False),  # an escaped backslash ends nothing
        ('["\\"' + "[" * 70 + '"]', True),  # an escaped quote does not end the string
    ],
)
def test_nesting_is_counted_outside_strings_only(document: str, accepted: bool) -> None:
    if accepted:
        loads_strict(document)
    else:
        with pytest.raises(StrictJsonError, match="nests deeper than"):
            loads_strict(document)


def test_depth_scan_is_linear_on_escaped_quotes() -> None:
    # A regex matching whole strings backtracks quadratically here (about 5 s for 40 kB).
    hostile = "[" * (MAX_DEPTH + 1) + '"' + '\\"' * 200_000
    start = time.perf_counter()
    with pytest.raises(StrictJsonError):
        loads_strict(hostile)
    assert time.perf_counter() - start < 2.0


def test_bytearray_is_read_like_bytes() -> None:
    assert loads_strict(bytearray(b'{"a": 1}')) == {"a": 1}
