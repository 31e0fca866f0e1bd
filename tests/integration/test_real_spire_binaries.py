"""The real provisioning path: whatever this machine offers (PATH, cache, download, Go build),
ensure_spire must end with real binaries that report the pinned release."""

from __future__ import annotations

import subprocess

import pytest

from spire_fabric.runtime import SPIRE_VERSION, ensure_spire


@pytest.mark.integration
@pytest.mark.timeout(3600)  # a Go build on a fresh machine takes minutes
def test_ensure_spire_provides_binaries_that_report_the_pinned_version() -> None:
    found = ensure_spire()

    assert SPIRE_VERSION == "1.13.3"
    for binary in (found.server, found.agent):
        proc = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        assert proc.returncode == 0, proc.stderr
        # SPIRE prints its version on stderr.
        assert (proc.stderr + proc.stdout).strip() == SPIRE_VERSION
