"""The blocking clients and watch loops are generated from their asyncio sources by
scripts/gen-sync; a hand edit to a generated file (or a source changed without
regenerating) fails here, naming the file."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _gen_sync() -> ModuleType:
    path = REPO / "scripts" / "gen-sync"
    loader = importlib.machinery.SourceFileLoader("gen_sync", str(path))
    spec = importlib.util.spec_from_loader("gen_sync", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


GEN = _gen_sync()
EXPECTED = GEN.generate(REPO)


@pytest.mark.parametrize("path", sorted(EXPECTED), ids=lambda p: str(p.relative_to(REPO)))
def test_generated_sync_file_matches_its_async_source(path: Path) -> None:
    name = path.relative_to(REPO)
    assert path.exists(), f"{name} is missing: run scripts/gen-sync"
    current = path.read_text(encoding="utf-8")
    assert current == EXPECTED[path], (
        f"{name} differs from what scripts/gen-sync makes of its async source: edit the "
        "async source and run scripts/gen-sync (generated files are not edited by hand)"
    )


def test_every_generated_file_carries_the_header() -> None:
    for path, text in EXPECTED.items():
        assert text.startswith(GEN.HEADER_PREFIX), path


def test_generation_is_deterministic() -> None:
    assert GEN.generate(REPO) == EXPECTED


def test_branches_resolve_to_the_blocking_one() -> None:
    source = (
        "import asyncio  # ASYNC\n"
        "async def f(x: AsyncThing) -> None:\n"
        "    if True:  # ASYNC\n"
        "        await asyncio.sleep(1)\n"
        "    else:\n"
        "        wait(1)\n"
        "    await g(x)\n"
    )
    assert GEN.unasync(source, "m.py").splitlines()[1:] == [
        "def f(x: Thing) -> None:",
        "    wait(1)",
        "    g(x)",
    ]


def test_a_dropped_block_keeps_the_spacing_of_what_follows() -> None:
    source = (
        "class A:\n"
        "    def f(self) -> None:\n"
        "        pass\n"
        "\n"
        "    if True:  # ASYNC\n"
        "\n"
        "        async def start(self) -> A:\n"
        "            return self\n"
        "\n"
        "\n"
        "class B:\n"
        "    pass\n"
    )
    assert GEN.unasync(source, "m.py").splitlines()[1:] == [
        "class A:",
        "    def f(self) -> None:",
        "        pass",
        "",
        "",
        "class B:",
        "    pass",
    ]


def test_aclose_becomes_close() -> None:
    source = "async def f(w: AsyncWatcher) -> None:\n    await w.aclose()\n"
    assert GEN.unasync(source, "m.py").splitlines()[1:] == [
        "def f(w: Watcher) -> None:",
        "    w.close()",
    ]


def test_the_workload_sources_are_generated_from_their_asyncio_twins() -> None:
    assert ("workload/_async_sources.py", "workload/_sources.py") in GEN.PAIRS
    from spire_fabric.workload import _sources

    assert _sources.__doc__ is not None
    text = Path(_sources.__file__).read_text(encoding="utf-8")
    assert text.startswith(GEN.HEADER_PREFIX)
