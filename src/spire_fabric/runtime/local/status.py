"""`status` of a local deployment: each component's process, health and SVID expiry.

Health comes from the components themselves (SPIRE's health endpoints, a workload's
listening port), the SVID expiry from SPIRE's APIs: never from our own bookkeeping alone.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from cryptography import x509

from spire_fabric.identity import join_token_agent_id
from spire_fabric.render import server_sidecar_app_port
from spire_fabric.runtime.deployment import ComponentHealth
from spire_fabric.runtime.local._supervisor_client import ComponentState
from spire_fabric.runtime.local.context import LocalContext, agent_component, server_component
from spire_fabric.runtime.local.localize import LOOPBACK
from spire_fabric.runtime.local.monitoring import monitoring_component, monitoring_urls
from spire_fabric.runtime.local.sidecars import SidecarProcess, sidecar_processes, svid_dir
from spire_fabric.runtime.local.waits import agent_healthy, http_ok, sidecar_ready, tcp_open
from spire_fabric.runtime.local.workloads import workload_processes
from spire_fabric.topology import Workload

__all__ = ["status_rows"]


def _server_svid_expiry(ctx: LocalContext, name: str) -> int | None:
    try:
        with ctx.server_client(name) as client:
            chain = client.server_info(timeout=3).svid_chain
    except Exception:
        return None
    return chain[0].expires_at if chain else None


def _agent_svid_expiries(ctx: LocalContext) -> dict[str, int]:
    """Agent SVID expiry as each server knows it (by the join token the agent used)."""
    result: dict[str, int] = {}
    for s in ctx.local.servers:
        try:
            with ctx.server_client(s.name) as client:
                agents = {str(a.id): a for a in client.list_agents(timeout=3)}
        except Exception:
            continue
        for a in ctx.local.agents_of(s.name):
            token = ctx.record.join_tokens.get(a.name)
            if token is None:
                continue
            info = agents.get(str(join_token_agent_id(s.trust_domain, token)))
            if info is not None:
                result[a.name] = info.x509svid_expires_at
    return result


def _workload_svid_expiry(ctx: LocalContext, workload: Workload) -> int | None:
    from spire_fabric.workload import WorkloadApiClient  # gRPC: not for a local `plan`

    try:
        with WorkloadApiClient(ctx.agent_endpoint(workload.agent), wait_for_socket=0.2) as c:
            svids = c.fetch_x509_svids(timeout=3)
    except Exception:
        return None
    for svid in svids:
        if str(svid.spiffe_id) == workload.spiffe_id:
            return int(svid.leaf.not_valid_after_utc.timestamp())
    return None


def _presented_expiry(port: int) -> int | None:
    """The expiry of the certificate a TLS server on loopback presents. A server sidecar
    demands a client certificate, but in TLS 1.3 the client holds the server's chain before
    the server judges the client, so no identity is needed to read it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # read, not trusted: status shows what is presented
    try:
        with socket.create_connection((LOOPBACK, port), timeout=2) as raw, \
                ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None
    if not der:
        return None
    return int(x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp())


def _file_expiry(path: Path) -> int | None:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return int(cert.not_valid_after_utc.timestamp())


def sidecar_row(ctx: LocalContext, sp: SidecarProcess, st: ComponentState | None,
                svids: bool = True) -> ComponentHealth:
    """A sidecar's row; its SVID expiry is its own: the chain a server sidecar presents,
    the svid.pem a files sidecar wrote, and for a client sidecar (which shows its chain
    only to its target) the SVID the agent serves to the entry it wears."""
    s, w = sp.sidecar, sp.workload
    running = bool(st and st.running)
    if s.mode == "server":
        assert sp.port is not None
        expiry = _presented_expiry(sp.port) if running and svids else None
        detail = f"mTLS :{sp.port} -> 127.0.0.1:{s.app_port}"
    elif s.mode == "client":
        expiry = _workload_svid_expiry(ctx, w) if running and svids else None
        detail = f"127.0.0.1:{s.listen_port} -> {s.target} (mTLS)"
    else:
        expiry = _file_expiry(svid_dir(ctx.state.path, w.name) / "svid.pem") if svids else None
        detail = f"files in {svid_dir(ctx.state.path, w.name)}"
    return ComponentHealth(
        name=f"{w.name}/{s.name}", kind="sidecar", pid=st.pid if st else None,
        running=running, healthy=running and sidecar_ready(ctx, sp), detail=detail,
        restarts=st.restarts if st else 0, last_exit=st.last_exit if st else None,
        svid_expires_at=expiry,
    )  # fmt: skip


def status_rows(ctx: LocalContext, svids: bool = True) -> list[ComponentHealth]:
    """``svids=False``: no expiries, so no Workload or Server API call and no TLS dial."""
    states = ctx.supervisor.states()
    sup = ctx.supervisor.pid
    rows = [
        ComponentHealth(
            name="supervisor",
            kind="supervisor",
            pid=sup,
            running=sup is not None,
            healthy=sup is not None,
            detail="restarts what crashes",
        )
    ]
    agent_expiry = _agent_svid_expiries(ctx) if svids else {}
    for s in ctx.local.servers:
        st = states.get(server_component(s.name))
        healthy = http_ok(s.host, s.ports.health, "/ready")
        rows.append(
            ComponentHealth(
                name=s.name,
                kind="server",
                pid=st.pid if st else None,
                running=bool(st and st.running),
                healthy=healthy,
                detail=f"api :{s.ports.api}, bundle endpoint :{s.ports.federation}",
                restarts=st.restarts if st else 0,
                last_exit=st.last_exit if st else None,
                svid_expires_at=_server_svid_expiry(ctx, s.name) if healthy and svids else None,
            )
        )
    for a in ctx.local.agents:
        st = states.get(agent_component(a.name))
        running = bool(st and st.running)
        rows.append(
            ComponentHealth(
                name=a.name,
                kind="agent",
                pid=st.pid if st else None,
                running=running,
                healthy=running and agent_healthy(ctx, a.name),
                detail=f"-> {a.server}, {ctx.agent_endpoint(a.name)}",
                restarts=st.restarts if st else 0,
                last_exit=st.last_exit if st else None,
                svid_expires_at=agent_expiry.get(a.name),
            )
        )
    for p in workload_processes(ctx):
        st = states.get(p.component.name)
        running = bool(st and st.running)
        port = server_sidecar_app_port(p.workload) or p.port  # behind a sidecar: the app's
        listening = port is None or tcp_open("127.0.0.1", port)
        rows.append(
            ComponentHealth(
                name=p.workload.name,
                kind="workload",
                pid=st.pid if st else None,
                running=running,
                healthy=running and listening,
                detail=f"https://127.0.0.1:{p.port}" if p.port else "client",
                restarts=st.restarts if st else 0,
                last_exit=st.last_exit if st else None,
                svid_expires_at=_workload_svid_expiry(ctx, p.workload) if svids else None,
            )
        )
    for sp in sidecar_processes(ctx):
        rows.append(sidecar_row(ctx, sp, states.get(sp.component.name), svids))
    urls = monitoring_urls(ctx)
    for kind, url in zip(("prometheus", "alertmanager"), urls or (), strict=False):
        st = states.get(monitoring_component(kind))
        running = bool(st and st.running)
        rows.append(
            ComponentHealth(
                name=kind,
                kind="monitoring",
                pid=st.pid if st else None,
                running=running,
                healthy=running and http_ok("127.0.0.1", int(url.rsplit(":", 1)[1]), "/-/ready"),
                detail=url,
                restarts=st.restarts if st else 0,
                last_exit=st.last_exit if st else None,
            )
        )
    return rows
