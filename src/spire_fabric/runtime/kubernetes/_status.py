"""`status` on Kubernetes: one row per server, agent, database and workload, read from the
API (rollout, pod restarts, last termination) and, for agents, SPIRE (SVID expiry)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException

from spire_fabric.render.kubernetes._mysql import mysql_instance
from spire_fabric.runtime.deployment import ComponentHealth
from spire_fabric.runtime.kubernetes._objects import ObjectRef, get_live
from spire_fabric.runtime.kubernetes._waits import pods_of, rollout_done

if TYPE_CHECKING:
    from spire_fabric.runtime.kubernetes.deployment import KubernetesDeployment


def status_rows(d: KubernetesDeployment) -> list[ComponentHealth]:
    t = d.topology
    rows: list[ComponentHealth] = []
    for s in t.servers:
        k = s.kubernetes
        if k is None:
            continue
        inst = mysql_instance(s)
        if inst is not None:
            rows.append(
                _row(
                    d,
                    k.cluster,
                    "database",
                    inst.service,
                    ObjectRef("apps/v1", "Deployment", k.namespace, inst.service),
                )
            )
        rows.append(_row(d, k.cluster, "server", s.name,
                         ObjectRef("apps/v1", "StatefulSet", k.namespace, s.name)))  # fmt: skip
    expiry = _agent_expiry(d)
    for a in t.agents:
        ak = a.kubernetes
        if ak is None:
            continue
        row = _row(d, ak.cluster, "agent", a.name,
                   ObjectRef("apps/v1", "DaemonSet", ak.namespace, a.name))  # fmt: skip
        agent_id = None
        with contextlib.suppress(Exception):
            agent_id = d.agent_id(a.name)
        if agent_id is not None and str(agent_id) in expiry:
            row = ComponentHealth(**{**row.__dict__, "svid_expires_at": expiry[str(agent_id)]})
        rows.append(row)
    for w in t.workloads:
        wk = w.kubernetes
        if wk is None or (w.run is None and not wk.command):
            continue
        cluster = t.agent(w.agent).kubernetes.cluster  # type: ignore[union-attr]
        rows.append(_row(d, cluster, "workload", w.name,
                         ObjectRef("apps/v1", "Deployment", wk.namespace, w.name)))  # fmt: skip
    return rows


def _row(
    d: KubernetesDeployment, cluster: str, kind: str, name: str, ref: ObjectRef
) -> ComponentHealth:
    conn = d.clusters[cluster]
    live = get_live(conn, ref)
    if live is None:
        return ComponentHealth(name, kind, None, False, False, f"{ref} not found in {cluster}")
    done, progress = rollout_done(live)
    restarts = 0
    last_exit = None
    pod_name = ""
    for pod in pods_of(conn, live):
        pod_name = pod.metadata.name
        for cs in pod.status.container_statuses or []:
            restarts += cs.restart_count or 0
            last = cs.last_state.terminated if cs.last_state else None
            if last is not None:
                last_exit = f"{cs.name}: exit {last.exit_code} ({last.reason})"
    return ComponentHealth(
        name=name,
        kind=kind,
        pid=None,
        running=progress != "not created" and bool(pod_name),
        healthy=done,
        detail=f"{ref.kind} {progress} in {cluster}" + (f", pod {pod_name}" if pod_name else ""),
        restarts=restarts,
        last_exit=last_exit,
        extra={"cluster": cluster, "pod": pod_name},
    )


def _agent_expiry(d: KubernetesDeployment) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in d.topology.servers:
        if not d.server_health(s.name)[1]:
            continue
        try:
            with d.server(s.name) as client:
                for a in client.list_agents(timeout=10):
                    out[str(a.id)] = int(_expiry(a))
        except (ApiException, Exception):
            continue
    return out


def _expiry(agent: Any) -> int:
    return int(getattr(agent, "x509svid_expires_at", 0) or 0)
