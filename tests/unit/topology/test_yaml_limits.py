"""Hostile topology YAML: every bound holds, fast, in bounded memory, with one clear line.

Each case is one finding of issue 26 ("Bounded input everywhere else"): an alias bomb that
used 1.58 GB through an error message, raw UnicodeDecodeError, RecursionError tracebacks,
int-conversion ValueErrors and a 50 MB file read whole.
"""

from __future__ import annotations

import codecs
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spire_fabric.topology import TopologyError, dump_topology, load_topology, preset
from spire_fabric.topology import _yaml_limits as limits


def _billion_laughs(levels: int = 9, fanout: int = 9) -> str:
    lines = ['a0: &a0 "lol"']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * fanout)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.fixture(params=["libyaml events", "pure-Python events"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a case on both parsers: libyaml's (when PyYAML has it) and PyYAML's own."""
    if request.param == "pure-Python events":
        monkeypatch.setattr(limits, "_LOADER", limits._PyLoader)
    elif limits._LOADER is limits._PyLoader:
        pytest.skip("PyYAML here is built without libyaml")
    yield request.param


def _one_problem(load: Callable[[], object]) -> str:
    """The single problem ``load`` raises, as its one line; RecursionError etc. fail here."""
    with pytest.raises(TopologyError) as info:
        load()
    (problem,) = info.value.problems
    line = str(problem)
    assert "\n" not in line and len(line) < 300, line
    return line


def _bounded(load: Callable[[], object], *, seconds: float = 1.0, megabytes: float = 20) -> str:
    """``_one_problem`` timed, then run again with the peak of Python allocations measured
    (tracemalloc slows Python code several times, so it is not on while timing)."""
    started = time.perf_counter()
    line = _one_problem(load)
    elapsed = time.perf_counter() - started
    assert elapsed < seconds, f"took {elapsed:.2f}s"
    tracemalloc.start()
    try:
        assert _one_problem(load) == line
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < megabytes * 2**20, f"peak {peak / 2**20:.1f} MiB"
    return line


def test_alias_bomb_fails_in_under_a_second_with_bounded_memory(loader: str) -> None:
    bomb = "name: t\n" + _billion_laughs()  # 9**9 = 387 million strings once expanded
    assert len(bomb) < 600
    line = _bounded(lambda: load_topology(bomb), megabytes=5)
    assert "expands through aliases to more than 100,000 values" in line
    assert line.startswith("line 8, column")  # an alias in a6, the first level past the bound


def test_an_alias_under_the_bound_is_quoted_short_where_a_string_is_expected(
    loader: str,
) -> None:
    # 9**4 = 6,561 strings (within the bound): the old message repr'd every one of them.
    anchors = "".join(f"  {line}\n" for line in _billion_laughs(levels=4).splitlines())
    doc = f"x:\n{anchors}name: *a4\n"
    started = time.perf_counter()
    with pytest.raises(TopologyError) as info:
        load_topology(doc)
    assert time.perf_counter() - started < 1.0
    problems = [str(p) for p in info.value.problems]
    assert problems[0].startswith("x: unknown field")
    assert problems[1].startswith("name: expected a string, got [[[")
    assert problems[1].endswith("...") and len(problems[1]) < 120


def test_a_recursive_alias_is_refused(loader: str) -> None:
    line = _one_problem(lambda: load_topology("name: t\nservers: &s [*s]\n"))
    assert line == (
        "line 2, column 14: alias *s refers to a node that contains it (a recursive structure)"
    )


@pytest.mark.parametrize("levels", [3_000, 20_000])
def test_deep_nesting_is_one_problem_not_a_recursion_error(loader: str, levels: int) -> None:
    doc = "name: " + "[" * levels + "]" * levels + "\n"
    # PyYAML's pure-Python scanner looks ahead up to 1024 characters for a simple key, in
    # quadratic time, before our composer sees the first event: slower, still bounded.
    line = _bounded(lambda: load_topology(doc), seconds=1.0 if "libyaml" in loader else 5.0)
    # libyaml's scanner looks ahead and meets its own limit (1000) first; either way one line.
    assert line.endswith(("nested more than 64 levels deep", "exceeded maximum nesting depth"))


def test_nesting_past_our_depth_limit_names_it(loader: str) -> None:
    doc = "name: t\nservers: " + "{a: " * 65 + "1" + "}" * 65 + "\n"
    assert _one_problem(lambda: load_topology(doc)) == (
        "line 2, column 259: nested more than 64 levels deep"
    )


def test_nesting_within_the_limit_is_read() -> None:
    doc = "name: t\nservers: " + "[" * 60 + "]" * 60 + "\n"
    line = _one_problem(lambda: load_topology(doc))
    assert line.startswith("servers[0]: expected a mapping for Server")


def test_a_5000_digit_integer_is_refused_before_conversion(loader: str) -> None:
    doc = "name: t\nservers:\n- name: s\n  ports: {api: " + "9" * 5000 + "}\n"
    assert _bounded(lambda: load_topology(doc)) == (
        "line 4, column 16: integer of 5000 digits; at most 40 are read"
    )


def test_a_5000_digit_duration_is_refused_before_conversion() -> None:
    text = dump_topology(preset("basic")).replace("ca_ttl: 24h", "ca_ttl: " + "9" * 5000 + "h")
    line = _bounded(lambda: load_topology(text))
    assert "ca_ttl: duration '99999" in line and "longer than Go can represent" in line


def test_a_value_pyyaml_cannot_convert_is_one_problem_with_its_place(loader: str) -> None:
    assert _one_problem(lambda: load_topology("name: 2001-13-01\n")) == (
        "line 1, column 7: not valid YAML: cannot read this value: month must be in 1..12"
    )


def test_a_50_mb_file_is_refused_after_reading_at_most_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:
        f.write(b"name: t\nx: '")
        f.truncate(50 * 2**20)  # sparse: 50 MB without writing them
    line = _bounded(lambda: load_topology(path), megabytes=3)
    assert line == f"{path}: larger than 1,048,576 bytes; a topology is far smaller"


def test_a_megabyte_of_small_maps_is_refused_where_the_count_passes_the_bound(
    loader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worst a file under the size cap can do: ~25,000 small maps, ~200,000 values (it
    # ran past 60 s and 1.7 GB at 50 MB before the caps). The running count refuses it
    # where it passes the bound, without parsing the rest; with the bound at 10,000 here
    # that is about line 1,250 of 25,000, which is what keeps this test fast.
    monkeypatch.setattr(limits, "MAX_VALUES", 10_000)
    rows = "".join(
        f"- {{name: w{i}, agent: a, selectors: [unix:uid:{i}]}}\n" for i in range(25_000)
    )
    doc = "name: t\nworkloads:\n" + rows[: limits.MAX_BYTES - 100].rsplit("\n", 1)[0] + "\n"
    seconds = 2.0 if "libyaml" in loader else 5.0
    line = _bounded(lambda: load_topology(doc), seconds=seconds, megabytes=20)
    assert line.endswith(": has more than 10,000 values")
    assert 1_000 < int(line.split(",")[0].removeprefix("line ")) < 1_500


def test_yaml_text_over_the_cap_is_refused() -> None:
    text = "name: t\nx: '" + "x" * limits.MAX_BYTES + "'\n"
    assert _one_problem(lambda: load_topology(text)).endswith(
        "larger than 1,048,576 characters; a topology is far smaller"
    )


def test_a_latin1_file_names_the_file_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: t\n# caf\u00e9\n".encode("latin-1"))
    assert _one_problem(lambda: load_topology(path)) == (
        f"{path}, line 2: not UTF-8 text: byte 0xe9 at offset 13 cannot start or continue "
        "a UTF-8 character; save the file as UTF-8"
    )


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("utf-16", "the file is UTF-16 text; save it as UTF-8"),
        ("utf-32", "the file is UTF-32 text; save it as UTF-8"),
        ("utf-16-le", "the file has NUL bytes (UTF-16 without a byte order mark, or binary)"),
    ],
)
def test_utf16_and_utf32_files_are_named_as_such(
    tmp_path: Path, encoding: str, message: str
) -> None:
    path = tmp_path / "wide.yaml"
    path.write_bytes(dump_topology(preset("basic")).encode(encoding))
    assert _one_problem(lambda: load_topology(path)).startswith(f"{path}: {message}")


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(codecs.BOM_UTF8 + dump_topology(preset("basic")).encode())
    assert load_topology(path) == preset("basic")


def test_a_yaml_syntax_error_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nservers: [\n")
    line = _one_problem(lambda: load_topology(path))
    assert line.startswith(f"{path}, line 3, column 1: not valid YAML: ")


def test_a_control_character_is_one_problem(loader: str) -> None:
    line = _one_problem(lambda: load_topology("name: t\x07\n"))
    assert line == (
        "character 8: not valid YAML: the control character U+0007 is not allowed in YAML text"
    )


def test_an_enormous_field_name_is_quoted_short() -> None:
    # an explicit key (`? key`), as a simple key is capped at 1024 characters by YAML itself
    line = _one_problem(lambda: load_topology("name: t\n? " + "k" * 100_000 + "\n: 1\n"))
    assert line.startswith("'kkkk") and "...: unknown field; Topology has: name," in line
