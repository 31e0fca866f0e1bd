"""`pip install spire-fabric` is the SDK; the installer, the dashboard and the entries CLI
come with extras, and without them each command says in one line what to install.

Here the missing modules are made missing inside one interpreter (``sys.modules[name] =
None`` makes both ``import name`` and ``importlib.util.find_spec(name)`` see no module); the
wheel test (tests/e2e/test_wheel.py) installs the real wheel with and without each extra.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Sequence

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from spire_fabric._extras import EXTRAS

DIST = "spire-fabric"
INSTALLER_MODULES = ("kubernetes", "rich")
ALL_EXTRA_MODULES = sorted({m for modules in EXTRAS.values() for m in modules})

# The SDK: what `pip install spire-fabric` gives (DESIGN.md; README "Install").
SDK = [
    "spire_fabric",
    "spire_fabric.identity",
    "spire_fabric.workload",
    "spire_fabric.tls",
    "spire_fabric.federation",
    "spire_fabric.server",
    "spire_fabric.agent",
    "spire_fabric.entries",
    "spire_fabric.topology",
    "spire_fabric.render",
    "spire_fabric.render.kubernetes",
]


def _requirements(extra: str | None) -> set[str]:
    """The distributions ``spire-fabric[extra]`` (None: no extra) requires, its own extras
    followed."""
    names: set[str] = set()
    todo, seen = [extra], set()
    while todo:
        current = todo.pop()
        seen.add(current)
        for text in importlib.metadata.requires(DIST) or []:
            req = Requirement(text)
            env = {"extra": current or ""}
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            if req.marker is None and current is not None:
                continue  # a base requirement, counted under extra None
            if canonicalize_name(req.name) == DIST:
                todo.extend(e for e in req.extras if e not in seen)
            else:
                names.add(canonicalize_name(req.name))
    return names


def _distributions_of(module: str) -> set[str]:
    return {canonicalize_name(d) for d in importlib.metadata.packages_distributions()[module]}


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_each_extra_brings_the_modules_its_commands_check_for(extra: str) -> None:
    brought = _requirements(extra) | _requirements(None)
    for module in EXTRAS[extra]:
        assert _distributions_of(module) & brought, f"[{extra}] does not bring {module}"


def test_the_plain_install_brings_no_module_of_any_extra() -> None:
    base = _requirements(None)
    for module in ALL_EXTRA_MODULES:
        assert not _distributions_of(module) & base, f"the SDK requires {module}"


def test_dev_installs_every_extra() -> None:
    dev = _requirements("dev")
    for extra in EXTRAS:
        assert _requirements(extra) <= dev, extra


def _without(modules: Sequence[str], code: str) -> subprocess.CompletedProcess[str]:
    hide = "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return subprocess.run(
        [sys.executable, "-c", f"import sys, runpy\n{hide}{code}"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_sdk_imports_without_kubernetes_and_rich() -> None:
    imports = "".join(f"import {name}\n" for name in SDK)
    result = _without(INSTALLER_MODULES, imports + "import spire_fabric.deploy\nprint('ok')")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


@pytest.mark.parametrize(
    ("module", "argv", "extra"),
    [
        ("spire_fabric.deploy", ["up"], "deploy"),
        ("spire_fabric.deploy", ["--help"], "deploy"),
        ("spire_fabric.dashboard", [], "dashboard"),
        ("spire_fabric.entries", ["list", "--owner", "x"], "cli"),
        ("spire_fabric.server", ["entries", "list", "--owner", "x"], "cli"),
    ],
)
def test_a_command_without_its_extra_prints_one_line_naming_the_install(
    module: str, argv: list[str], extra: str
) -> None:
    run = (
        f"sys.argv = [{module!r}, *{argv!r}]\n"
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
    )
    result = _without(ALL_EXTRA_MODULES, run)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"pip install 'spire-fabric[{extra}]'" in lines[0]
    assert "not installed" in lines[0] and "Traceback" not in result.stderr


def test_code_that_imports_the_cli_without_the_extra_is_told_what_to_install() -> None:
    result = _without(INSTALLER_MODULES, "from spire_fabric.deploy import main")
    assert result.returncode == 1
    assert "ModuleNotFoundError" in result.stderr
    assert "pip install 'spire-fabric[deploy]'" in result.stderr


def test_package_names_are_the_functions_whatever_was_imported_first() -> None:
    # `attach` is also the name of a submodule: the function must win however the
    # submodules were loaded (a notebook imports the CLI's modules through the dashboard)
    code = (
        "import inspect, spire_fabric.deploy.attach, spire_fabric.deploy.cli\n"
        "from spire_fabric.deploy import attach, main\n"
        "from spire_fabric.dashboard import create_app\n"
        "print(all(map(inspect.isfunction, (attach, main, create_app))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.stdout == "True\n", result.stderr
