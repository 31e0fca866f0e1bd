"""`python -m spire_fabric.entries` starts by importing only what it uses.

Start-up is most of a small `entries apply`/`list` next to SPIRE's Go CLI (docs/performance.md),
so the program must not pay for the Workload API, mTLS and federation rooms that the package
root offers lazily, nor for rich when it prints JSON. A fresh interpreter, because this test
session has imported everything already.
"""

from __future__ import annotations

import pytest
from fresh_interpreter import modules_after

NOT_NEEDED = ("spire_fabric.workload", "spire_fabric.tls", "spire_fabric.federation", "rich")
# what the server client does not use of identity (the chain explainer brings pyOpenSSL,
# the adapters py-spiffe), and PyYAML, which `list` does not need: imported on first use
NOT_NEEDED_MODULES = (
    "OpenSSL",
    "spiffe",
    "spire_fabric.identity._explain",
    "spire_fabric.identity._pyspiffe",
    "spire_fabric.identity._x509_verify",
    "yaml",
)


def _rooms(modules: set[str]) -> set[str]:
    return {room for room in NOT_NEEDED if any(m.split(".")[:2] == room.split(".")[:2]
                                               for m in modules)}  # fmt: skip


def test_the_entries_program_imports_neither_workload_tls_federation_nor_rich() -> None:
    modules = modules_after("import spire_fabric.entries._cli")
    assert "spire_fabric.server" in modules  # the probe did import the program
    assert _rooms(modules) == set()
    assert {m for m in NOT_NEEDED_MODULES if m in modules} == set()


def test_an_identity_name_still_imports_its_module_on_first_use() -> None:
    modules = modules_after("import spire_fabric.identity as i\ni.explain_chain")
    assert "spire_fabric.identity._explain" in modules and "OpenSSL" in modules
    from spire_fabric import identity

    assert "explain_chain" in dir(identity)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        identity.nothing_here  # noqa: B018


def test_an_entries_file_still_parses_with_yaml_imported_on_first_use() -> None:
    modules = modules_after(
        "from spire_fabric.entries import parse_entries\n"
        "parse_entries('owner: o\\nentries: []\\n')"
    )
    assert "yaml" in modules


def test_a_root_name_still_imports_its_room_on_first_use() -> None:
    modules = modules_after("import spire_fabric\nspire_fabric.X509Source")
    assert "spire_fabric.workload" in modules
    assert "spire_fabric.tls" not in modules


def test_table_output_still_draws_with_rich() -> None:
    from spire_fabric.entries._cli import _print_list

    # a table needs rich; the lazy import must still find it (one owner, no entries)
    _print_list("table", "bench", [])


def test_the_command_runs_without_the_cyclic_collector_and_gives_it_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import gc

    from spire_fabric.entries import _cli

    seen: list[bool] = []
    real_run = _cli._run
    monkeypatch.setattr(_cli, "_run", lambda args: seen.append(gc.isenabled()) or real_run(args))
    # no server at that socket: the command fails (exit 1) after the collector was off
    code = _cli.main(["list", "--owner", "o", "--socket", "/tmp/sf-no-such-dir/api.sock"])
    assert (code, seen, gc.isenabled()) == (1, [False], True)
    assert "no SPIRE server API socket" in capsys.readouterr().err
