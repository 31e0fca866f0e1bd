"""Bounded waits of `up`, and the probes they poll.

A wait that runs out raises :class:`UpError` naming what did not become ready, the last
exit the supervisor saw and the tail of that component's log: the user sees *why* without
opening a file.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from spire_fabric.render import server_sidecar_app_port
from spire_fabric.runtime.local._supervisor_client import ComponentState
from spire_fabric.runtime.local.bootstrap import UpError
from spire_fabric.runtime.local.context import (
    LocalContext,
    agent_component,
    server_component,
    workload_component,
)
from spire_fabric.runtime.local.localize import LOOPBACK
from spire_fabric.runtime.local.monitoring import monitoring_component, monitoring_urls
from spire_fabric.runtime.local.sidecars import SidecarProcess, sidecar_processes
from spire_fabric.runtime.local.workloads import workload_processes
from spire_fabric.runtime.monitoring import MonitoringError, scrape_targets

__all__ = ["agent_healthy", "http_ok", "tcp_open", "wait_for"]

SERVER_START_TIMEOUT_S = 60.0
AGENT_START_TIMEOUT_S = 60.0
SVID_WAIT_TIMEOUT_S = 60.0
WORKLOAD_SETTLE_S = 0.5
POLL_S = 0.05


def http_ok(host: str, port: int, path: str, timeout: float = 2.0) -> bool:
    """GET a health endpoint directly (http.client: no proxy settings apply)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for(
    ctx: LocalContext, ready: Callable[[], bool], timeout: float, what: str, component: str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(POLL_S)
    state = ctx.supervisor.states().get(component)
    log = ctx.log_path(component)
    extra = f" (last exit: {state.last_exit})" if state and state.last_exit else ""
    raise UpError(f"{what} within {timeout:.0f}s{extra}; log: {log}\n{tail(log)}")


def agent_healthy(ctx: LocalContext, name: str) -> bool:
    agent = ctx.local.agent(name)
    if agent.health_port is not None:
        return http_ok(agent.host, agent.health_port, "/ready")
    result = subprocess.run(
        [str(ctx.binaries.agent), "healthcheck", "-socketPath", ctx.agent_socket(name)],
        capture_output=True,
    )
    return result.returncode == 0


def wait_servers_ready(ctx: LocalContext, names: list[str]) -> None:
    for name in names:
        s = ctx.local.server(name)
        wait_for(
            ctx,
            partial(http_ok, s.host, s.ports.health, "/ready"),
            SERVER_START_TIMEOUT_S,
            f"{s.name} did not become ready on {s.host}:{s.ports.health}/ready",
            server_component(s.name),
        )


def wait_agents_healthy(ctx: LocalContext, names: list[str]) -> None:
    for name in names:
        wait_for(
            ctx,
            partial(agent_healthy, ctx, name),
            AGENT_START_TIMEOUT_S,
            f"{name} did not become healthy",
            agent_component(name),
        )


def _issues_all(ctx: LocalContext, agent: str, spiffe_ids: frozenset[str], seen: set[str]) -> bool:
    """Whether ``agent`` issues every one of ``spiffe_ids``; ``seen`` keeps what it issued
    at the last look, so a timeout can name the ones still missing."""
    from spire_fabric.workload import WorkloadApiClient  # gRPC: not for a local `plan`

    try:
        with WorkloadApiClient(ctx.agent_endpoint(agent), wait_for_socket=0.2) as client:
            issued = {str(s.spiffe_id) for s in client.fetch_x509_svids(timeout=2)}
    except Exception:  # the agent may not have synced yet
        return False
    seen.clear()
    seen.update(issued)
    return spiffe_ids <= issued


def wait_for_svids(ctx: LocalContext, agents: list[str]) -> None:
    """Until every entry of these agents reaches the agent (SPIRE's entry cache reload and
    the agent's sync interval are what this waits for).

    One Workload API fetch per agent and poll answers for all of its workloads: asking per
    workload made `up` of 200 workloads 200 fetches, each returning every SVID of its agent.
    """
    wanted: dict[str, set[str]] = {}
    for w in ctx.local.workloads:
        if w.agent in agents:
            wanted.setdefault(w.agent, set()).add(w.spiffe_id)
    for agent, ids in wanted.items():
        seen: set[str] = set()
        try:
            wait_for(
                ctx,
                partial(_issues_all, ctx, agent, frozenset(ids), seen),
                SVID_WAIT_TIMEOUT_S,
                f"agent {agent} did not issue every SVID of its workloads",
                agent_component(agent),
            )
        except UpError as err:
            missing = sorted(ids - seen)
            shown = ", ".join(missing[:5]) + (
                f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            raise UpError(
                f"{len(missing)} of the {len(ids)} SVIDs of {agent}'s workloads never came "
                f"({shown}); {err}"
            ) from None


def _state_unless_crashed(ctx: LocalContext, component: str) -> ComponentState | None:
    """The component's state; a crash (exited, waiting for its restart) fails `up` at once,
    naming the workload, its exit and its log."""
    state = ctx.supervisor.states().get(component)
    if state is not None and state.last_exit is not None and not state.running:
        raise UpError(
            f"{component.split(':', 1)[1]} could not be started: it {state.last_exit}; "
            f"log: {ctx.log_path(component)}\n{tail(ctx.log_path(component))}"
        )
    return state


def _settled(ctx: LocalContext, component: str) -> bool:
    """Running for WORKLOAD_SETTLE_S without a crash."""
    state = _state_unless_crashed(ctx, component)
    started = state.started_at if state is not None else None
    return started is not None and time.time() - started >= WORKLOAD_SETTLE_S


def _listening(ctx: LocalContext, component: str, port: int) -> bool:
    _state_unless_crashed(ctx, component)
    return tcp_open("127.0.0.1", port)


def wait_workloads(ctx: LocalContext) -> None:
    """Every workload the topology says to run is running: one that serves answers on its
    port, one that does not has run for a moment without crashing. One that cannot start
    fails `up` naming it and why, never silently."""
    for p in workload_processes(ctx):
        component = workload_component(p.workload.name)
        port = server_sidecar_app_port(p.workload) or p.port  # behind a sidecar: its own port
        if port is None:
            wait_for(
                ctx,
                partial(_settled, ctx, component),
                SVID_WAIT_TIMEOUT_S,
                f"workload {p.workload.name} did not stay running",
                component,
            )
        else:
            wait_for(
                ctx,
                partial(_listening, ctx, component, port),
                SVID_WAIT_TIMEOUT_S,
                f"workload {p.workload.name} is not listening on 127.0.0.1:{port}",
                component,
            )
    for sp in sidecar_processes(ctx):
        wait_for(ctx, partial(sidecar_ready, ctx, sp), SVID_WAIT_TIMEOUT_S,
                 f"sidecar {sp.sidecar.name} of {sp.workload.name} is not ready",
                 sp.component.name)  # fmt: skip


def sidecar_ready(ctx: LocalContext, sp: SidecarProcess) -> bool:
    """A proxy listens on its port (ghostunnel binds only once it holds an SVID); the
    helper answers /ready (its files are written and current), or has settled."""
    s = sp.sidecar
    if s.mode == "files":
        if s.status_port is not None:
            _state_unless_crashed(ctx, sp.component.name)
            return http_ok("127.0.0.1", s.status_port, "/ready")
        return _settled(ctx, sp.component.name)
    assert sp.port is not None
    return _listening(ctx, sp.component.name, sp.port)


MONITORING_START_TIMEOUT_S = 60.0


def wait_monitoring_ready(ctx: LocalContext) -> None:
    """Until Prometheus and Alertmanager answer /-/ready and Prometheus' last scrape of
    every target succeeded: `verify` right after `up` judges real scrapes, and a target
    that stays down is named here (its log says why) rather than left to an alert."""
    urls = monitoring_urls(ctx)
    if urls is None:
        return
    for kind, url in zip(("prometheus", "alertmanager"), urls, strict=True):
        wait_for(
            ctx,
            partial(http_ok, LOOPBACK, int(url.rsplit(":", 1)[1]), "/-/ready"),
            MONITORING_START_TIMEOUT_S,
            f"{kind} did not become ready on {url}/-/ready",
            monitoring_component(kind),
        )
    wait_for(
        ctx,
        partial(_all_scraped, urls[0]),
        MONITORING_START_TIMEOUT_S,
        f"prometheus does not see every target up (which and why: {urls[0]}/targets)",
        monitoring_component("prometheus"),
    )


def _all_scraped(prometheus: str) -> bool:
    try:
        targets = scrape_targets(prometheus)
    except MonitoringError:
        return False
    return bool(targets) and all(t.health == "up" for t in targets)

