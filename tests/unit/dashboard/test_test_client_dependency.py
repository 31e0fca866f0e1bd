"""Starlette's test client has the HTTP client it is built on (issue 26: it warned that
httpx is deprecated there). In a child interpreter with every warning an error, so the
import really happens (not served from this process's module cache) and any deprecation
of the test client's dependency fails the test."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("starlette")


def test_starlette_test_client_imports_without_a_deprecation_warning() -> None:
    code = "import starlette.testclient"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1:]
