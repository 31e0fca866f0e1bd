"""docs/notebooks/explore-trust-bundles.ipynb runs top to bottom against real SPIRE.

The notebook attaches by name (``attach("enterprise")``), as a user's would; the test
brings the topology up where that name finds it by pointing ``XDG_STATE_HOME`` (the state
root `attach` reads) at a temporary directory, for this process and the kernel it starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from spire_fabric.testing import short_tempdir

from .conftest import Deploy, free_port_base

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK = Path(__file__).parents[2] / "docs" / "notebooks" / "explore-trust-bundles.ipynb"


@pytest.fixture(scope="module")
def named_enterprise() -> Iterator[Deploy]:
    root = short_tempdir("sf-nb-")
    deploy = Deploy(root / "spire-fabric" / "enterprise", free_port_base())
    saved = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(root)
    try:
        deploy.up()
        yield deploy
    finally:
        deploy.run("down", "--purge")
        if saved is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = saved


def test_notebook_executes_top_to_bottom_against_the_running_topology(
    named_enterprise: Deploy, tmp_path: Path
) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    env = dict(os.environ)  # the kernel needs the state root and this checkout's sources
    src = str(Path(__file__).parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    client = nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute(env=env)  # raises CellExecutionError naming the cell that failed
    errors = [
        out
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", ())
        if out.get("output_type") == "error"
    ]
    assert not errors
    html = "".join(
        out.get("data", {}).get("text/html", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", ())
    )
    assert "permitted subtree violation" in html and "Enterprise Root CA" in html
    # the topology's view, which render draws (handed in by the package root)
    assert "<svg" in html and "flowchart LR" in html


def test_committed_notebook_keeps_its_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code)
    assert all(c.get("outputs") for c in code[:-1])  # the last cell only closes clients
