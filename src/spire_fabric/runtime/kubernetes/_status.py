"""`status` on Kubernetes: one row per server, agent, database, workload (and each of its
sidecars, a container of its pod, with its own SVID expiry) and monitoring
Deployment (Prometheus per cluster, Alertmanager), read from the
API (rollout, pod restarts, last termination) and SPIRE (SVID expiry: a server's from its
own API, an agent's as its server knows it, a workload's as its agent gives it to the
workload, fetched inside the cluster, as `verify` does).

Workloads' fetches go in parallel: each is an exec into the workload's pod (about a second).
"""

from __future__ import annotations

import contextlib
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cryptography import x509
from kubernetes.client.exceptions import ApiException

from spire_fabric.render.kubernetes import (
    ALERTMANAGER,
    PROMETHEUS,
    SVID_DIR,
    mysql_instance,
    workload_command,
)
from spire_fabric.runtime.deployment import ComponentHealth
from spire_fabric.runtime.kubernetes._objects import ObjectRef, get_live
from spire_fabric.runtime.kubernetes._sidecars import SidecarFacts, sidecar_facts
from spire_fabric.runtime.kubernetes._view import ClusterDeployment as KubernetesDeployment
from spire_fabric.runtime.kubernetes._waits import pods_of, rollout_done
from spire_fabric.topology import MONITORING_NAMESPACE, Workload, monitoring_cluster


def status_rows(d: KubernetesDeployment, svids: bool = True) -> list[ComponentHealth]:
    """``svids=False``: no expiries, so no exec into any pod and no Server API call."""
    t = d.topology
    running = [w.name for w in t.workloads if _runs_in_a_pod(d, w)] if svids else []
    with_sidecars = [n for n in running if t.workload(n).sidecars]
    # Server reads share the deployment's port-forwards and admin SVIDs: one thread;
    # each workload's fetch is its own exec, and so is each sidecar pod's look inside.
    with ThreadPoolExecutor(max_workers=4) as pool:
        workload_expiry = {w: pool.submit(_workload_expiry, d, w) for w in running}
        facts = {w: pool.submit(_facts, d, w) for w in with_sidecars}
        server_expiry = {s.name: _server_expiry(d, s.name) if svids else None
                         for s in t.servers}  # fmt: skip
        agent_expiry = _agent_expiry(d) if svids else {}
        rows = _rows(d, agent_expiry, server_expiry,
                     {n: f.result() for n, f in workload_expiry.items()})  # fmt: skip
        sidecar_facts_of = {n: f.result() for n, f in facts.items()}
    return _with_sidecar_rows(d, rows, sidecar_facts_of)


def _facts(d: KubernetesDeployment, name: str) -> SidecarFacts | None:
    try:
        return sidecar_facts(d.clusters, d.topology, name)
    except Exception:  # no ready pod: the rows say so from the API's side
        return None


def _with_sidecar_rows(d: KubernetesDeployment, rows: list[ComponentHealth],
                       facts: dict[str, SidecarFacts | None]) -> list[ComponentHealth]:
    """After each workload's row, one per sidecar (a container of its pod): its own SVID
    expiry, as on the local target: the leaf a server sidecar presents, the svid.pem a
    files sidecar wrote, and for a client sidecar (which shows its chain only to its
    target) the SVID the agent serves the pod."""
    out: list[ComponentHealth] = []
    t = d.topology
    for row in rows:
        out.append(row)
        if row.kind != "workload" or not t.workload(row.name).sidecars:
            continue
        w = t.workload(row.name)
        cluster = str(row.extra.get("cluster", ""))
        pod = str(row.extra.get("pod", ""))
        statuses = _container_statuses(d, cluster, w, pod)
        f = facts.get(w.name)
        for sc in w.sidecars:
            cs = statuses.get(sc.name)
            expiry: int | None = None
            if sc.mode == "server" and f is not None and f.presented is not None:
                expiry = int(x509.load_der_x509_certificate(f.presented)
                             .not_valid_after_utc.timestamp())  # fmt: skip
                detail = f"mTLS :{w.kubernetes.service_port if w.kubernetes else '?'} -> " \
                         f"127.0.0.1:{sc.app_port}"
            elif sc.mode == "server":
                detail = f"mTLS -> 127.0.0.1:{sc.app_port}"
            elif sc.mode == "client":
                expiry = row.svid_expires_at
                detail = f"127.0.0.1:{sc.listen_port} -> {sc.target} (mTLS)"
            else:
                pem = f.files.get("svid.pem", (b"", 0))[0] if f is not None else b""
                with contextlib.suppress(ValueError):
                    expiry = int(x509.load_pem_x509_certificate(pem)
                                 .not_valid_after_utc.timestamp()) if pem else None  # fmt: skip
                detail = f"files in {SVID_DIR}"
            last = cs.last_state.terminated if cs is not None and cs.last_state else None
            out.append(ComponentHealth(
                name=f"{w.name}/{sc.name}", kind="sidecar", pid=None,
                running=bool(cs is not None and cs.state and cs.state.running),
                healthy=bool(cs is not None and cs.ready),
                detail=f"{detail}, container {sc.name} of pod {pod or '(none)'}",
                restarts=(cs.restart_count or 0) if cs is not None else 0,
                last_exit=f"exit {last.exit_code} ({last.reason})" if last else None,
                svid_expires_at=expiry,
                extra={"cluster": cluster, "pod": pod},
            ))  # fmt: skip
    return out


def _container_statuses(d: KubernetesDeployment, cluster: str, w: Workload, pod: str
                        ) -> dict[str, Any]:
    if not pod or w.kubernetes is None or cluster not in d.clusters:
        return {}
    try:
        live = d.clusters[cluster].core.read_namespaced_pod(pod, w.kubernetes.namespace)
    except ApiException:
        return {}
    return {cs.name: cs for cs in live.status.container_statuses or []}


def _runs_in_a_pod(d: KubernetesDeployment, w: Workload) -> bool:
    """Rendered with a Deployment (a registered-only workload's pods are the user's)."""
    return w.kubernetes is not None and workload_command(d.topology, w) is not None


def _with_expiry(row: ComponentHealth, expires_at: int | None) -> ComponentHealth:
    return row if expires_at is None else dataclasses.replace(row, svid_expires_at=expires_at)


def _rows(
    d: KubernetesDeployment,
    expiry: dict[str, int],
    server_expiry: dict[str, int | None],
    workload_svids: dict[str, tuple[int, str] | None],
) -> list[ComponentHealth]:
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
        row = _row(d, k.cluster, "server", s.name,
                   ObjectRef("apps/v1", "StatefulSet", k.namespace, s.name))  # fmt: skip
        rows.append(_with_expiry(row, server_expiry.get(s.name)))
    for a in t.agents:
        ak = a.kubernetes
        if ak is None:
            continue
        row = _row(d, ak.cluster, "agent", a.name,
                   ObjectRef("apps/v1", "DaemonSet", ak.namespace, a.name))  # fmt: skip
        agent_id = None
        with contextlib.suppress(Exception):
            agent_id = d.agent_id(a.name)
        rows.append(_with_expiry(row, expiry.get(str(agent_id)) if agent_id else None))
    for w in t.workloads:
        wk = w.kubernetes
        if wk is None or not _runs_in_a_pod(d, w):
            continue
        cluster = t.agent(w.agent).kubernetes.cluster  # type: ignore[union-attr]
        row = _row(d, cluster, "workload", w.name,
                   ObjectRef("apps/v1", "Deployment", wk.namespace, w.name))  # fmt: skip
        held = workload_svids.get(w.name)
        if held is not None:
            expires_at, serial = held
            row = dataclasses.replace(row, svid_expires_at=expires_at,
                                      extra={**row.extra, "svid_serial": serial})  # fmt: skip
        rows.append(row)
    return rows + _monitoring_rows(d)


def _monitoring_rows(d: KubernetesDeployment) -> list[ComponentHealth]:
    """Each cluster's Prometheus (the monitoring cluster's is plain ``prometheus``, the ones
    it federates carry their cluster's name) and the Alertmanager; none without monitoring."""
    t = d.topology
    if t.monitoring is None:
        return []
    main = monitoring_cluster(t)
    rows = []
    for c in t.clusters:
        apps = (PROMETHEUS, ALERTMANAGER) if c.name == main else (PROMETHEUS,)
        for app in apps:
            name = app if c.name == main else f"{app}-{c.name}"
            ref = ObjectRef("apps/v1", "Deployment", MONITORING_NAMESPACE, app)
            rows.append(_row(d, c.name, "monitoring", name, ref))
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
    pod_names: list[str] = []
    for pod in pods_of(conn, live):
        pod_name = pod.metadata.name
        pod_names.append(str(pod_name))
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
        detail=f"{ref.kind} {progress} in {cluster}" + _pods_text(ref.kind, pod_names),
        restarts=restarts,
        last_exit=last_exit,
        extra={"cluster": cluster, "pod": pod_name, "replicas": progress},
    )


def _pods_text(kind: str, pods: list[str]) -> str:
    """``, pod a`` for one pod; a server's replicas all named (``, replicas a, b``);
    a DaemonSet's pods are one per node and only counted in its progress."""
    if not pods:
        return ""
    if kind == "StatefulSet" and len(pods) > 1:
        return ", replicas " + ", ".join(sorted(pods))
    return f", pod {pods[-1]}"


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


def _server_expiry(d: KubernetesDeployment, name: str) -> int | None:
    """The server's own X.509-SVID (the one it serves its APIs with)."""
    try:
        if not d.server_health(name)[1]:
            return None
        chain = d.server_info(name).svid_chain
    except Exception:  # not ready, no pod: the row says so from the API's side
        return None
    return chain[0].expires_at if chain else None


def _workload_expiry(d: KubernetesDeployment, name: str) -> tuple[int, str] | None:
    """(expiry, serial in hex) of the X.509-SVID the workload's agent gives it, fetched
    inside its pod."""
    want = d.topology.workload(name).spiffe_id
    try:
        svids = d.x509_context(name).svids
    except Exception:  # no running pod, agent not serving it: the row says not ready
        return None
    for svid in svids:
        if str(svid.spiffe_id) == want:
            leaf = svid.leaf
            return int(leaf.not_valid_after_utc.timestamp()), format(leaf.serial_number, "x")
    return None


def _expiry(agent: Any) -> int:
    return int(getattr(agent, "x509svid_expires_at", 0) or 0)
