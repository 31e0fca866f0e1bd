"""The inventory launcher with Debian's real nginx, when the SVID files are caught in the
middle of a rotation: a certificate of one SVID with the key of another.

That is what a files-mode helper leaves for a moment while it replaces them (key first,
then chain, each atomically). nginx exits at start on such a pair; the launcher starts it
again once the pair is whole, and gives up, saying so, if it never is. Seen in CI on
2026-12-07, when `up` restarted catalog and its helper together after a settings change.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from spire_fabric._atomic import write_atomic
from spire_fabric.testing import short_tempdir
from spire_fabric.testing.pki import make_ca, make_svid

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REPO = Path(__file__).resolve().parents[2]
ID = "spiffe://downstream.example.org/ns/downstream-workloads/sa/catalog"


@pytest.fixture
def tls_dir() -> Path:
    if not os.access(NGINX, os.X_OK):
        pytest.fail(f"no nginx at {NGINX}: scripts/setup installs Debian's nginx")
    d = short_tempdir("sf-inv-") / "svid"
    d.mkdir()
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_pair(tls_dir: Path, *, mismatched: bool) -> None:
    ca = make_ca("downstream.example.org")
    svid, other = make_svid(ca, ID), make_svid(ca, ID)
    write_atomic(tls_dir / "svid_bundle.pem", ca.cert.public_bytes(Encoding.PEM), 0o644)
    write_atomic(tls_dir / "svid_key.pem", (other if mismatched else svid).private_key_pem(),
                 0o600)  # fmt: skip
    write_atomic(tls_dir / "svid.pem", svid.cert_chain_pem(), 0o644)


def _launch(tls_dir: Path, port: int, nginx: str = NGINX) -> subprocess.Popen[str]:
    prefix = tls_dir.parent / "nginx"
    prefix.mkdir()
    return subprocess.Popen(
        [sys.executable, "-m", "examples.inventory", "--listen", f"127.0.0.1:{port}",
         "--prefix", str(prefix), "--tls-dir", str(tls_dir), "--nginx", nginx,
         "--files-timeout", "5"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_listening(launcher: subprocess.Popen[str], port: int, timeout: float = 15) -> None:
    """Until nginx listens on ``port``; fails if the launcher ends first or it takes longer."""
    deadline = time.monotonic() + timeout
    while not _listening(port):
        assert launcher.poll() is None, launcher.communicate()
        assert time.monotonic() < deadline, "nginx never listened"
        time.sleep(0.2)


def test_nginx_is_started_again_once_the_pair_is_whole(tls_dir: Path) -> None:
    _write_pair(tls_dir, mismatched=True)
    port = _free_port()
    launcher = _launch(tls_dir, port)
    try:
        time.sleep(1.5)  # nginx has refused the pair at least once
        assert launcher.poll() is None, launcher.communicate()
        _write_pair(tls_dir, mismatched=False)  # the helper's next write
        _wait_listening(launcher, port)
    finally:
        launcher.terminate()
        _, err = launcher.communicate(timeout=15)
    assert "certificate and key of two different SVIDs" in err, err
    assert "starting it again (2 of 5)" in err, err


def test_a_pair_that_stays_mismatched_ends_the_launcher_with_nginx_s_status(
    tls_dir: Path,
) -> None:
    _write_pair(tls_dir, mismatched=True)
    launcher = _launch(tls_dir, _free_port())
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 1, err  # nginx's own exit status on [emerg]
    assert "(5 of 5)" in err and "key values mismatch" in err, err


def test_nginx_is_started_again_when_the_pair_was_replaced_while_it_read_it(
    tls_dir: Path,
) -> None:
    """What CI hit: old, whole files are there; the helper writes the new key, nginx reads
    (mismatch, exit 1), the helper writes the new chain, and by the time the launcher looks
    the pair is whole again. The first start goes through a wrapper that plays the helper
    around the real nginx, so the timing is not left to chance."""
    _write_pair(tls_dir, mismatched=False)  # the old SVID, whole
    new_ca = make_ca("downstream.example.org")
    new = make_svid(new_ca, ID)
    (tls_dir.parent / "new_key.pem").write_bytes(new.private_key_pem())
    (tls_dir.parent / "new_chain.pem").write_bytes(new.cert_chain_pem())
    wrapper = tls_dir.parent / "nginx-mid-rotation"
    marker = tls_dir.parent / "first-start-done"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"if [ -e {marker} ]; then exec {NGINX} \"$@\"; fi\n"
        f"touch {marker}\n"
        f"cp {tls_dir.parent}/new_key.pem {tls_dir}/.k && mv {tls_dir}/.k {tls_dir}/svid_key.pem\n"
        f"{NGINX} \"$@\"; rc=$?\n"
        f"cp {tls_dir.parent}/new_chain.pem {tls_dir}/.c && mv {tls_dir}/.c {tls_dir}/svid.pem\n"
        "exit $rc\n"
    )
    wrapper.chmod(0o755)
    port = _free_port()
    launcher = _launch(tls_dir, port, nginx=str(wrapper))
    try:
        _wait_listening(launcher, port)
    finally:
        launcher.terminate()
        _, err = launcher.communicate(timeout=15)
    assert "key values mismatch" in err and "starting it again (2 of 5)" in err, err
