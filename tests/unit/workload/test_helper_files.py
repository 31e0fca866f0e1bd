"""Files mode without SPIRE: options refused by name, the files and modes written, only
changed files rewritten, federated bundles on request, the health endpoint bounded.
(The helper against a real agent: tests/integration/workload/test_helper_files_mode.py.)"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from spire_fabric.helper import (
    HealthServer,
    HelperConfig,
    HelperConfigError,
    HelperState,
    _health,
    _metrics,
)
from spire_fabric.helper._cli import main, parse_args
from spire_fabric.helper._files import write_files, x509_files
from spire_fabric.helper._notify import notify
from spire_fabric.identity import TrustDomain, X509Bundle, X509Svid
from spire_fabric.workload import X509Context

from ._svids import make_ca, make_svid_der


def _context(federated: bool = False) -> X509Context:
    ca = make_ca("example.org")
    leaf, key = make_svid_der(ca, "spiffe://example.org/app")
    svid = X509Svid.parse_der(leaf, key)
    bundles = {TrustDomain("example.org"): X509Bundle(TrustDomain("example.org"), (ca[0],))}
    if federated:
        other = make_ca("other.org")[0]
        bundles[TrustDomain("other.org")] = X509Bundle(TrustDomain("other.org"), (other,))
    return X509Context((svid,), bundles)


@pytest.mark.parametrize(("argv", "named"), [
    (["--signal", "HUP"], "--signal needs --pid or --pid-file"),
    (["--pid", "42"], "--pid/--pid-file need --signal"),
    (["--signal", "HUP", "--pid", "1"], "--pid: 1"),
    (["--signal", "NOPE", "--pid", "42"], "--signal: 'NOPE'"),
    (["--key-mode", "0700"], "--key-mode: '0700' may hold only read/write bits"),
    (["--key-mode", "u+rw"], "--key-mode: 'u+rw' is not an octal"),
    (["--cert-mode", "0044"], "--cert-mode: '0044' leaves the file unreadable"),
    (["--svid-file", "../x.pem"], "--svid-file: '../x.pem' must be a plain file name"),
    (["--key-file", "svid.pem"], "--key-file: 'svid.pem' is also the file of --svid-file"),
    (["--jwt-svid", "aud=svid_bundle.pem"], "is also the file of --bundle-file"),
    (["--once", "--health-listen", "127.0.0.1:0"], "--health-listen: only a daemon"),
    (["--command", "unclosed 'quote"], "--command: No closing quotation"),
    (["--timeout", "0"], "--timeout: must be positive"),
    (["--timeout", "nan"], "--timeout: must be positive"),
])  # fmt: skip
def test_bad_option_is_refused_naming_it(tmp_path: Path, argv: list[str], named: str) -> None:
    with pytest.raises(HelperConfigError) as err:
        parse_args(["--cert-dir", str(tmp_path), *argv])
    assert named in str(err.value)


def test_no_workload_api_address_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SPIFFE_ENDPOINT_SOCKET", raising=False)
    assert main(["--cert-dir", str(tmp_path), "--once"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("helper: ") and "SPIFFE_ENDPOINT_SOCKET" in err
    assert "Traceback" not in err


def test_missing_cert_dir_is_named(tmp_path: Path) -> None:
    with pytest.raises(HelperConfigError, match=r"--cert-dir: .* is not a directory"):
        parse_args(["--cert-dir", str(tmp_path / "nope")])


def test_files_have_their_modes_and_only_changed_files_are_rewritten(tmp_path: Path) -> None:
    old_umask = os.umask(0o077)  # the modes asked for must not depend on the umask
    try:
        _modes_and_rewrites(tmp_path)
    finally:
        os.umask(old_umask)


def _modes_and_rewrites(tmp_path: Path) -> None:
    config = parse_args(["--cert-dir", str(tmp_path), "--cert-mode", "0640"])
    context = _context()
    first = write_files(tmp_path, x509_files(config, context))
    assert first.changed == ("svid_bundle.pem", "svid_key.pem", "svid.pem")  # key before chain
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"svid.pem": 0o640, "svid_key.pem": 0o600, "svid_bundle.pem": 0o640}
    assert not write_files(tmp_path, x509_files(config, context))  # same bytes: no write

    (tmp_path / "svid_key.pem").chmod(0o644)  # a mode changed by hand is put back
    assert write_files(tmp_path, x509_files(config, context)).changed == ("svid_key.pem",)
    assert stat.S_IMODE((tmp_path / "svid_key.pem").stat().st_mode) == 0o600


def test_federated_bundles_only_when_asked(tmp_path: Path) -> None:
    context = _context(federated=True)
    own = x509_files(HelperConfig(cert_dir=tmp_path), context)[0].data
    both = x509_files(HelperConfig(cert_dir=tmp_path, include_federated=True), context)[0].data
    assert own.count(b"BEGIN CERTIFICATE") == 1
    assert both.count(b"BEGIN CERTIFICATE") == 2 and both.startswith(own)


def test_missing_own_bundle_is_not_written_as_an_empty_ca_file(tmp_path: Path) -> None:
    context = _context()
    broken = X509Context(context.svids, {})
    with pytest.raises(ValueError, match=r"no bundle for example\.org"):
        x509_files(HelperConfig(cert_dir=tmp_path), broken)


def test_signal_goes_to_the_pid_in_the_pid_file_read_each_time(tmp_path: Path) -> None:
    pid_file = tmp_path / "app.pid"
    config = HelperConfig(cert_dir=tmp_path, signal=signal.SIGUSR1, pid_file=pid_file)
    nobody = notify(config)
    assert nobody == "no process to send SIGUSR1 yet" and nobody.signals == 0
    app = subprocess.Popen([sys.executable, "-c",
                            "import signal,sys,time\n"
                            "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(7))\n"
                            "print('ready', flush=True)\ntime.sleep(30)"],
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert app.stdout is not None and app.stdout.readline().strip() == "ready"
        pid_file.write_text(f"{app.pid}\n")
        sent = notify(config)
        assert sent == f"sent SIGUSR1 to pid {app.pid}" and sent.signals == 1
        assert app.wait(10) == 7
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()


def test_command_runs_without_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "ran; echo injected"
    config = HelperConfig(cert_dir=tmp_path, command=("touch", str(marker)))
    assert notify(config) == "ran touch (exit 0)"
    assert marker.exists()


def _get(address: tuple[str, int], path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*address, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_health_is_503_until_written_then_200_and_404_elsewhere() -> None:
    state = HelperState()
    server = HealthServer(("127.0.0.1", 0), state)
    try:
        assert _get(server.address, "/live")[0] == 200
        assert _get(server.address, "/ready")[0] == 503
        svid = _context().default_svid
        state.x509_written(str(svid.spiffe_id), svid.leaf.not_valid_after_utc, True, "")
        status, body = _get(server.address, "/ready")
        assert status == 200 and b'"spiffe_id": "spiffe://example.org/app"' in body
        assert b'"rotations": 0' in body  # the first write is not a rotation
        assert _get(server.address, "/../etc/passwd")[0] == 404
        state.error("stream ended", fatal=True)
        assert _get(server.address, "/live")[0] == 503
    finally:
        server.close()


def _samples(text: bytes) -> dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(text.decode())
            for s in f.samples}  # fmt: skip


def test_metrics_follow_the_written_svid_its_serial_changes_writes_and_signals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_metrics, "MIN_RENDER_INTERVAL_S", 0.0)
    state = HelperState()
    server = HealthServer(("127.0.0.1", 0), state)
    try:
        status, body = _get(server.address, "/metrics")
        assert status == 200
        before = _samples(body)  # nothing written yet: no expiry series, counters at 0
        assert "spire_fabric_helper_svid_expiry_seconds" not in before
        assert before["spire_fabric_helper_file_writes_total"] == 0
        first, second = _context().default_svid, _context().default_svid
        assert first.leaf.serial_number != second.leaf.serial_number
        for svid, signals in ((first, 0), (first, 0), (second, 1)):
            state.x509_written(str(svid.spiffe_id), svid.leaf.not_valid_after_utc, True, "",
                               serial=svid.leaf.serial_number, lifetime_s=3600.0,
                               wrote=svid is second, signals=signals)  # fmt: skip
        after = _samples(_get(server.address, "/metrics")[1])
        left = (second.leaf.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)).total_seconds()
        assert abs(after["spire_fabric_helper_svid_expiry_seconds"] - left) < 5
        assert after["spire_fabric_helper_svid_lifetime_seconds"] == 3600.0
        assert after["spire_fabric_helper_svid_serial_changes_total"] == 1
        assert after["spire_fabric_helper_file_writes_total"] == 1
        assert after["spire_fabric_helper_reload_signals_total"] == 1
    finally:
        server.close()


def test_health_survives_clients_that_hold_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_health, "REQUEST_TIMEOUT_S", 1.0)
    server = HealthServer(("127.0.0.1", 0), HelperState())
    idle: list[socket.socket] = []
    try:
        # Fill every slot with a client trickling a request line, plus some over the cap.
        for _ in range(_health.MAX_CONNECTIONS + 4):
            s = socket.create_connection(server.address, timeout=5)
            s.sendall(b"GET /li")
            idle.append(s)
        time.sleep(0.3)
        assert server.refused_over_cap >= 4
        for s in idle:  # keep trickling: the socket timeout alone would never fire
            with contextlib.suppress(OSError):  # the ones over the cap are closed already
                s.sendall(b"v")
        time.sleep(1.5)  # past the whole-connection deadline: the slots are free again
        assert _get(server.address, "/live")[0] == 200
    finally:
        for s in idle:
            s.close()
        server.close()
