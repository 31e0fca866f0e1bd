"""Names that moved to another room still import from the old one for a release, with a
DeprecationWarning that names the new home; the old CLI spelling still runs."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from spire_fabric import server


@pytest.mark.parametrize("name", sorted(server._MOVED))
def test_moved_server_name_warns_and_is_the_new_object(name: str) -> None:
    home = server._MOVED[name]
    with pytest.warns(DeprecationWarning, match=f"moved to {home}.{name}"):
        old = getattr(server, name)
    assert old is getattr(importlib.import_module(home), name)


def test_from_import_of_a_moved_name_works() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from spire_fabric.server import apply_entries  # noqa: F401
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)


def test_unknown_server_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        server.NoSuchThing  # noqa: B018


def test_old_cli_spelling_warns_and_runs_the_entries_cli(tmp_path) -> None:
    socket = tmp_path / "missing.sock"
    args = ["entries", "list", "--owner", "x", "--socket", str(socket)]
    result = subprocess.run(
        [sys.executable, "-m", "spire_fabric.server", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "python -m spire_fabric.entries" in result.stderr
    assert "no SPIRE server API socket" in result.stderr
    assert result.returncode == 1


def test_old_topology_builder_spelling_warns_and_still_builds() -> None:
    from spire_fabric.topology import Topology, TopologyBuilder

    with pytest.warns(DeprecationWarning, match=r"use TopologyBuilder\(name\)"):
        builder = Topology.builder("t")
    assert isinstance(builder, TopologyBuilder)
    built = builder.trust_domain("example.org").server("s", "example.org").build()
    assert isinstance(built, Topology) and built.name == "t"
