"""`python -m spire_fabric.helper` (files mode) against a real SPIRE server and agent.

The oracles are SPIRE's: the SVID on disk must be the one the agent serves now (the SDK
fetches it in the test process, same uid, same entry), the bundle must be the server's own
(`spire-server bundle show`), a JWT-SVID on disk must be accepted by the agent's
ValidateJWTSVID. The helper runs as its own process, exactly as a user runs it.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

from spire_fabric.identity import X509Bundle, X509Svid
from spire_fabric.testing._processes import (
    SpireAgentProcess,
    SpireServerProcess,
    current_uid_selector,
)
from spire_fabric.workload import WorkloadApiClient

from .conftest import Workload, poll, wait_for_identity

HELPER = [sys.executable, "-m", "spire_fabric.helper"]
ROTATING_ID = "spiffe://example.org/files-mode"
SVID_TTL_S = 20  # the agent rotates at half-life: a new SVID every ~10 s


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_once_writes_the_agents_current_svid_key_bundle_and_jwt(
    workload: Workload, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [*HELPER, "--once", "--cert-dir", str(tmp_path), "--endpoint", workload.endpoint,
         "--jwt-svid", "spiffe://example.org/api=api.jwt", "--jwt-bundle-file", "jwt.json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr

    chain, key = (tmp_path / "svid.pem").read_bytes(), (tmp_path / "svid_key.pem").read_bytes()
    on_disk = X509Svid.parse_pem(chain, key)  # parses only if the key matches the leaf
    with WorkloadApiClient(workload.endpoint) as client:
        served = client.fetch_x509_svid()
        token = (tmp_path / "api.jwt").read_text().strip()
        validated = client.validate_jwt_svid(token, "spiffe://example.org/api")
    assert on_disk.cert_chain == served.cert_chain
    assert str(on_disk.spiffe_id) == workload.spiffe_id
    assert str(validated.spiffe_id) == workload.spiffe_id

    bundle = X509Bundle.parse_pem(on_disk.spiffe_id.trust_domain,
                                  (tmp_path / "svid_bundle.pem").read_bytes())
    server_bundle = X509Bundle.parse_pem(on_disk.spiffe_id.trust_domain,
                                         workload.server.bundle_pem().encode())
    assert set(bundle.x509_authorities) == set(server_bundle.x509_authorities)
    assert "example.org" in json.loads((tmp_path / "jwt.json").read_text())

    assert {name: _mode(tmp_path / name) for name in
            ("svid.pem", "svid_key.pem", "svid_bundle.pem", "api.jwt", "jwt.json")} == {
        "svid.pem": 0o644, "svid_key.pem": 0o600, "svid_bundle.pem": 0o644,
        "api.jwt": 0o600, "jwt.json": 0o644}  # fmt: skip
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def test_once_without_an_identity_fails_naming_what_it_waited_for(
    spire_agent: SpireAgentProcess, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [*HELPER, "--once", "--cert-dir", str(tmp_path), "--endpoint", spire_agent.endpoint,
         "--timeout", "3"], capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "an X509-SVID from" in proc.stderr
    assert not list(tmp_path.iterdir())


# A stand-in for nginx: a process that counts the reload signals it gets and records, at
# each one, the serial of the certificate it then reads from the files.
_APP = textwrap.dedent("""
    import os, signal, sys, time
    from cryptography import x509
    cert_dir, log = sys.argv[1], sys.argv[2]
    def reload(signum, frame):
        pem = open(os.path.join(cert_dir, "svid.pem"), "rb").read()
        serial = x509.load_pem_x509_certificate(pem).serial_number
        with open(log, "a") as f:
            f.write(f"{serial}\\n")
    signal.signal(signal.SIGUSR1, reload)
    open(sys.argv[3], "w").write(str(os.getpid()))
    while True:
        time.sleep(1)
""")


def test_daemon_follows_rotation_signals_the_app_and_reports_health(
    spire_server: SpireServerProcess, spire_agent: SpireAgentProcess, tmp_path: Path
) -> None:
    spire_server.create_entry(ROTATING_ID, spire_agent.spiffe_id, [current_uid_selector()],
                              x509_svid_ttl=SVID_TTL_S)  # fmt: skip
    wait_for_identity(spire_agent)
    certs, log, pid_file = tmp_path / "certs", tmp_path / "reloads", tmp_path / "app.pid"
    certs.mkdir()
    app = subprocess.Popen([sys.executable, "-c", _APP, str(certs), str(log), str(pid_file)])
    helper = None
    try:
        poll(lambda: pid_file.exists() and pid_file.read_text(), 10, "the app's pid file")
        helper = subprocess.Popen(
            [*HELPER, "--cert-dir", str(certs), "--endpoint", spire_agent.endpoint,
             "--signal", "USR1", "--pid-file", str(pid_file),
             "--health-listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert helper.stdout is not None
        line = helper.stdout.readline()
        assert "health on http://127.0.0.1:" in line, line
        health = line.split("http://", 1)[1].split("/", 1)[0]

        # Two rotations after the first write: three distinct serials reloaded, in order.
        def reloads() -> list[int] | None:
            serials = [int(s) for s in log.read_text().split()] if log.exists() else []
            return serials if len(set(serials)) >= 3 else None

        serials = poll(reloads, 4 * SVID_TTL_S, "two rotations signalled to the app", 0.5)
        assert len(serials) == len(set(serials)), "a reload without a new SVID"

        with WorkloadApiClient(spire_agent.endpoint) as client:
            def current() -> bool:
                served = client.fetch_x509_svid()
                return (certs / "svid.pem").read_bytes() == served.cert_chain_pem()
            poll(current, 10, "svid.pem to be the agent's current SVID")
        # parses only if the key on disk is the one of the chain on disk
        X509Svid.parse_pem((certs / "svid.pem").read_bytes(), (certs / "svid_key.pem").read_bytes())

        with urllib.request.urlopen(f"http://{health}/ready", timeout=5) as resp:
            doc = json.loads(resp.read())
        assert resp.status == 200
        assert doc["spiffe_id"] == ROTATING_ID and doc["rotations"] >= 2
        assert "sent SIGUSR1 to pid" in doc["last_notification"]
        assert app.poll() is None  # reloaded by signal, never restarted

        helper.send_signal(signal.SIGTERM)
        assert helper.wait(15) == 0
    finally:
        for proc in (helper, app):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
