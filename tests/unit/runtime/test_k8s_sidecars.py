"""Sidecars on Kubernetes, the parts that do not need a cluster: the programs `status` and
`verify` run inside pods (run here against real sockets and files), the sidecar rows of
`status`, verify's plain-port judgement, and Prometheus scraping the sidecars (its jobs,
headless Services and the NetworkPolicy rule that lets it in). The cluster tests
(tests/kubernetes_clusters/test_installer.py) run the same on real pods."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from spire_fabric.render.kubernetes import render_kubernetes_objects
from spire_fabric.render.kubernetes._monitoring import render_kubernetes_prometheus_config
from spire_fabric.runtime.deployment import ComponentHealth
from spire_fabric.runtime.kubernetes import _sidecars
from spire_fabric.runtime.kubernetes._sidecars import PeerProbe, SidecarFacts
from spire_fabric.runtime.kubernetes._status import _with_sidecar_rows
from spire_fabric.testing.pki import make_ca, make_svid
from spire_fabric.topology import kubernetes_view, preset
from spire_fabric.topology._kubernetes_only import SIDECARS_ENV
from spire_fabric.verify._report import CheckFailed
from spire_fabric.verify._sidecar_checks import _not_from_peer


@pytest.fixture
def sidecars_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SIDECARS_ENV, "1")


def _run(program: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", program, *args], capture_output=True,
                         text=True, check=True, timeout=30)  # fmt: skip
    loaded: dict[str, Any] = json.loads(out.stdout)
    return loaded


def test_the_in_pod_facts_program_reads_the_presented_leaf_and_the_files_with_modes(
        tmp_path: Path) -> None:
    """A real TLS server that demands a client certificate still shows its leaf (TLS 1.3),
    and the files come back byte for byte with their modes; dot files are skipped."""
    ca = make_ca("example.org")
    svid = make_svid(ca, "spiffe://example.org/inventory")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(svid.cert_chain_pem())
    key.write_bytes(svid.private_key_pem())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca.cert.public_bytes(Encoding.PEM).decode())
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            ctx.wrap_socket(conn, server_side=True).close()
        except (OSError, ssl.SSLError):
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    svid_dir = tmp_path / "svid"
    svid_dir.mkdir()
    for name, mode in (("svid.pem", 0o644), ("svid_key.pem", 0o600), (".tmp", 0o600)):
        (svid_dir / name).write_bytes(name.encode())
        os.chmod(svid_dir / name, mode)
    try:
        raw = _run(_sidecars._FACTS, str(port), str(svid_dir))
    finally:
        listener.close()
    der = base64.b64decode(raw["presented"])
    assert x509.load_der_x509_certificate(der) == svid.leaf
    assert {n: (base64.b64decode(v[0]), v[1]) for n, v in raw["files"].items()} == {
        "svid.pem": (b"svid.pem", 0o644), "svid_key.pem": (b"svid_key.pem", 0o600)}


def test_the_in_pod_connect_program_tells_an_open_port_from_a_refused_one() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    open_port = listener.getsockname()[1]
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        raw = _run(_sidecars._CONNECT, "127.0.0.1", str(open_port), str(closed_port))
    finally:
        listener.close()
    assert raw[str(open_port)] == "open"
    assert raw[str(closed_port)].startswith("ConnectionRefusedError")


def _probe(public: str, plain: str) -> PeerProbe:
    return PeerProbe("enterprise-api", "10.0.0.7", {8443: public, 30446: plain})


def test_verify_passes_when_the_plain_port_is_closed_and_the_sidecars_answers() -> None:
    inv = preset("enterprise").workload("inventory")
    detail = _not_from_peer(lambda n, p: _probe("open", "ConnectionRefusedError: x"), inv, 30446)
    assert "10.0.0.7:30446 refused" in detail and "enterprise-api" in detail


@pytest.mark.parametrize(("public", "plain", "says"), [
    ("open", "open", "accepted a connection: the app listens beyond loopback"),
    ("TimeoutError: timed out", "TimeoutError: timed out", "does not answer either"),
])  # fmt: skip
def test_verify_fails_an_open_plain_port_and_a_probe_that_reaches_nothing(
        public: str, plain: str, says: str) -> None:
    inv = preset("enterprise").workload("inventory")
    with pytest.raises(CheckFailed, match=says):
        _not_from_peer(lambda n, p: _probe(public, plain), inv, 30446)


class _Core:
    def __init__(self, statuses: list[Any]) -> None:
        self.statuses = statuses

    def read_namespaced_pod(self, name: str, namespace: str) -> Any:
        return SimpleNamespace(status=SimpleNamespace(container_statuses=self.statuses))


def _cs(name: str, ready: bool, restarts: int = 0) -> Any:
    return SimpleNamespace(name=name, ready=ready, restart_count=restarts, last_state=None,
                           state=SimpleNamespace(running=object() if ready else None))


def test_status_has_a_row_per_sidecar_with_its_own_svid_expiry(sidecars_on: None) -> None:
    t = kubernetes_view(preset("enterprise")).topology
    ca = make_ca("downstream.example.org")
    presented = make_svid(ca, t.workload("inventory").spiffe_id)
    written = make_svid(ca, t.workload("catalog").spiffe_id)
    core = _Core([_cs("inventory", True), _cs("tls", True, restarts=2), _cs("api-poller", True),
                  _cs("mtls", False), _cs("catalog", True), _cs("svid", True)])
    d = SimpleNamespace(topology=t, clusters={"downstream-cluster": SimpleNamespace(core=core)})

    def row(name: str, expiry: int | None = None) -> ComponentHealth:
        return ComponentHealth(name, "workload", None, True, True, "", svid_expires_at=expiry,
                               extra={"cluster": "downstream-cluster", "pod": f"{name}-0"})

    facts = {
        "inventory": SidecarFacts("inventory-0", presented.leaf.public_bytes(Encoding.DER),
                                  None, {}),
        "catalog": SidecarFacts("catalog-0", None, None,
                                {"svid.pem": (written.cert_chain_pem(), 0o644)}),
        "api-poller": None,
    }
    rows = _with_sidecar_rows(d, [row("inventory"), row("api-poller", 1234), row("catalog")],
                              facts)  # type: ignore[arg-type]
    by = {r.name: r for r in rows}
    assert [r.name for r in rows] == ["inventory", "inventory/tls", "api-poller",
                                      "api-poller/mtls", "catalog", "catalog/svid"]
    tls, mtls, svid = by["inventory/tls"], by["api-poller/mtls"], by["catalog/svid"]
    assert tls.kind == "sidecar" and tls.healthy and tls.restarts == 2
    assert tls.svid_expires_at == int(presented.leaf.not_valid_after_utc.timestamp())
    assert svid.svid_expires_at == int(written.leaf.not_valid_after_utc.timestamp())
    assert mtls.svid_expires_at == 1234 and not mtls.healthy and not mtls.running
    assert "container tls of pod inventory-0" in tls.detail


def test_prometheus_scrapes_each_sidecar_by_its_status_name(sidecars_on: None) -> None:
    """Jobs named as locally (ghostunnel at its Prometheus path, svid-helper), a headless
    Service per sidecar, the component label `<workload>/<sidecar>` as `status` names it,
    and the NetworkPolicy opening each status port to Prometheus alone."""
    t = kubernetes_view(preset("enterprise")).topology
    config = yaml.safe_load(render_kubernetes_prometheus_config(t, "downstream-cluster"))
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    gu, helper = jobs["ghostunnel"], jobs["svid-helper"]
    assert gu["metrics_path"] == "/_metrics/prometheus" and helper["metrics_path"] == "/metrics"
    assert [c["names"] for c in gu["dns_sd_configs"]] == [
        ["inventory-tls-metrics.downstream-workloads.svc"],
        ["api-poller-mtls-metrics.downstream-workloads.svc"]]
    assert {(r.get("replacement"), r["regex"]) for r in gu["relabel_configs"]} >= {
        ("inventory/tls", r"inventory-tls-metrics\..+")}
    objs = render_kubernetes_objects(t)
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    svc = services["catalog-svid-metrics"]["spec"]
    assert svc["clusterIP"] == "None" and svc["ports"][0]["port"] == 30449
    policy = next(o for o in objs if o["kind"] == "NetworkPolicy"
                  and o["metadata"]["name"] == "workload-inventory")
    ports = {p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]}
    assert ports == {8443, 30447}  # the sidecar's mTLS port and its metrics, never 30446
    upstream = yaml.safe_load(render_kubernetes_prometheus_config(t, "upstream-cluster"))
    assert not {"ghostunnel", "svid-helper"} & {j["job_name"] for j in upstream["scrape_configs"]}


def _files(svid: Any, ca: Any) -> dict[str, tuple[bytes, int]]:
    return {"svid.pem": (svid.cert_chain_pem(), 0o644),
            "svid_key.pem": (svid.private_key_pem(), 0o600),
            "svid_bundle.pem": (ca.cert.public_bytes(Encoding.PEM), 0o644)}


def test_the_files_check_reads_again_when_the_agent_rotated_between_its_reads() -> None:
    """verify reads the agent's SVID once per run; with 20 s SVIDs (and exec reads on
    Kubernetes) the helper may already hold the next one: both are read again, the agent's
    first. Files that lag behind the agent still fail."""
    from spire_fabric.identity import TrustDomain
    from spire_fabric.verify._sidecar_checks import _files_current
    from spire_fabric.workload import X509Context

    t = preset("enterprise")
    w = t.workload("catalog")
    ca = make_ca("downstream.example.org")
    old, new = make_svid(ca, w.spiffe_id), make_svid(ca, w.spiffe_id)
    context = X509Context((new,), {TrustDomain("downstream.example.org"): ca.bundle(
        "downstream.example.org")})
    ok = _files_current(lambda n: _files(new, ca), w, lambda _: old, lambda _: context,
                        lambda: new)
    assert "modes 0644/0600/0644" in ok
    with pytest.raises(CheckFailed, match="is not the SVID the agent serves now"):
        _files_current(lambda n: _files(old, ca), w, lambda _: new, lambda _: context,
                       lambda: new)
    with pytest.raises(CheckFailed, match="is not the SVID the agent serves now"):
        _files_current(lambda n: _files(new, ca), w, lambda _: old, lambda _: context)
