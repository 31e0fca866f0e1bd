"""Bounded waits with answers: when something is not ready in time, the error says which
object, which pod, which container, and why (its waiting reason, the pod's events and the
last lines of its log), so nobody has to go and run kubectl describe."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from spire_fabric.runtime.images import is_project_image, missing_image_hint
from spire_fabric.runtime.kubernetes._clusters import ClusterApi, label_selector
from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.runtime.kubernetes._objects import Obj, ObjectRef, get_live

# A container waiting for one of these will not get better by itself.
FATAL_WAITING = {
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
}
# ...and one that restarts this often is crash-looping on something that needs a fix,
# unless it is waiting for a peer (a server for its database, an agent for its bundle).
POLL_S = 1.0
# The pull failures of FATAL_WAITING: for the project's own image the error also names the
# command that builds it (no registry serves it).
PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"}


def wait_crds_established(conn: ClusterApi, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(names)
    last: dict[str, str] = {}
    while pending and time.monotonic() < deadline:
        still = []
        for name in pending:
            live = get_live(
                conn, ObjectRef("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", name)
            )
            conds = {
                c["type"]: c for c in ((live or {}).get("status") or {}).get("conditions") or []
            }
            if conds.get("Established", {}).get("status") == "True":
                continue
            still.append(name)
            bad = [
                f"{t}={c.get('status')} ({c.get('reason')}: {c.get('message')})"
                for t, c in conds.items()
                if c.get("status") != "True"
            ]
            last[name] = "; ".join(bad) or "no conditions yet"
        pending = still
        if pending:
            time.sleep(POLL_S)
    if pending:
        raise KubernetesTargetError(
            f"CustomResourceDefinition not established after {timeout:.0f}s in {conn.where()}: "
            + "; ".join(f"{n}: {last.get(n, '?')}" for n in pending)
        )
    conn.refresh_discovery()


def rollout_done(o: Obj) -> tuple[bool, str]:
    """(done, progress) of a Deployment, StatefulSet or DaemonSet as the API reports it."""
    kind = o["kind"]
    spec, status = o.get("spec") or {}, o.get("status") or {}
    gen = (o.get("metadata") or {}).get("generation") or 0
    observed = status.get("observedGeneration") or status.get("observed_generation") or 0
    if observed < gen:
        return False, "controller has not seen the latest spec"

    def n(key: str) -> int:
        return int(status.get(key) or 0)

    if kind == "DaemonSet":
        want = n("desiredNumberScheduled")
        ready, updated = n("numberReady"), n("updatedNumberScheduled")
        if want == 0:
            return False, "no node matches its node selector"
        return ready >= want and updated >= want, f"{ready}/{want} ready"
    want = int(spec.get("replicas", 1))
    ready, updated = n("readyReplicas"), n("updatedReplicas")
    if kind == "StatefulSet":
        current = status.get("currentRevision") == status.get("updateRevision")
        return ready >= want and updated >= want and current, f"{ready}/{want} ready"
    available = n("availableReplicas")
    return (
        ready >= want and updated >= want and available >= want and n("replicas") == want,
        f"{ready}/{want} ready",
    )


def wait_rollouts(
    conn: ClusterApi,
    refs: list[ObjectRef],
    timeout: float,
    on_progress: Callable[[str], None] | None = None,
) -> None:
    """Wait until every workload object has rolled out; fail early on a pod that cannot
    start (an image that cannot be pulled), and with the reasons on timeout."""
    deadline = time.monotonic() + timeout
    pending = list(refs)
    progress: dict[ObjectRef, str] = {}
    while pending:
        still = []
        for ref in pending:
            live = get_live(conn, ref)
            if live is None:
                still.append(ref)
                progress[ref] = "not created"
                continue
            done, text = rollout_done(live)
            progress[ref] = text
            if done:
                continue
            still.append(ref)
            fatal = _fatal_pod_problem(conn, live)
            if fatal:
                raise KubernetesTargetError(f"{ref} in {conn.where()} cannot start: {fatal}")
        pending = still
        if on_progress and pending:
            on_progress(", ".join(f"{r.name} {progress[r]}" for r in pending))
        if not pending:
            return
        if time.monotonic() > deadline:
            raise KubernetesTargetError(
                f"not ready after {timeout:.0f}s in {conn.where()}:\n"
                + "\n".join(describe_not_ready(conn, r, progress.get(r, "")) for r in pending)
            )
        time.sleep(POLL_S)


def pods_of(conn: ClusterApi, o: Obj) -> list[Any]:
    ns = o["metadata"].get("namespace")
    labels = ((o.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = label_selector(labels)
    try:
        return list(conn.core.list_namespaced_pod(ns, label_selector=selector).items)
    except ApiException:
        return []


def _fatal_pod_problem(conn: ClusterApi, o: Obj) -> str | None:
    for pod in pods_of(conn, o):
        for cs in (pod.status.container_statuses or []) + (
            pod.status.init_container_statuses or []
        ):
            waiting = cs.state.waiting if cs.state else None
            if waiting and waiting.reason in FATAL_WAITING:
                problem = (
                    f"pod {pod.metadata.name} container {cs.name} ({cs.image}): "
                    f"{waiting.reason}: {waiting.message or ''}".rstrip(": ")
                )
                if waiting.reason in PULL_FAILURES and is_project_image(cs.image or ""):
                    # No registry serves the project's workload image: say how to make it.
                    problem += f"; the workload image: {missing_image_hint(cs.image)}"
                return problem
    return None


def describe_not_ready(conn: ClusterApi, ref: ObjectRef, progress: str) -> str:
    """What `kubectl describe` and `kubectl logs --tail` would have told the user."""
    lines = [f"- {ref}: {progress or 'not ready'}"]
    live = get_live(conn, ref)
    if live is None:
        return lines[0]
    pods = pods_of(conn, live)
    if not pods:
        lines.append("  no pods (check its node selector and the events of its namespace)")
    for pod in pods[:3]:
        name = pod.metadata.name
        lines.append(f"  pod {name} on {pod.spec.node_name or 'no node'}: {pod.status.phase}")
        for cs in pod.status.container_statuses or []:
            lines.append("    " + _container_line(cs))
            if not cs.ready:
                tail = _log_tail(conn, pod.metadata.namespace, name, cs.name, cs.restart_count)
                lines += [f"      | {t}" for t in tail]
        for e in _events(conn, pod.metadata.namespace, name)[-4:]:
            lines.append(f"    event {e}")
    return "\n".join(lines)


def _container_line(cs: Any) -> str:
    state = cs.state
    if state and state.waiting:
        now = f"waiting: {state.waiting.reason} {state.waiting.message or ''}".strip()
    elif state and state.terminated:
        now = f"terminated: {state.terminated.reason} (exit {state.terminated.exit_code})"
    else:
        now = "running"
    last = cs.last_state.terminated if cs.last_state else None
    extra = f"; last exit {last.exit_code} ({last.reason})" if last else ""
    return f"container {cs.name}: {now}, ready={cs.ready}, restarts={cs.restart_count}{extra}"


def _log_tail(conn: ClusterApi, ns: str, pod: str, container: str, restarts: int) -> list[str]:
    try:
        text = conn.core.read_namespaced_pod_log(
            pod,
            ns,
            container=container,
            tail_lines=6,
            previous=restarts > 0,
            _request_timeout=10,
        )
    except ApiException:
        try:
            text = conn.core.read_namespaced_pod_log(
                pod, ns, container=container, tail_lines=6, _request_timeout=10
            )
        except ApiException:
            return []
    return [line[:200] for line in str(text).splitlines()[-6:]]


def _events(conn: ClusterApi, ns: str, pod: str) -> list[str]:
    try:
        items = conn.core.list_namespaced_event(
            ns, field_selector=f"involvedObject.name={pod}"
        ).items
    except ApiException:
        return []
    items.sort(key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp)
    return [f"{e.type} {e.reason}: {(e.message or '')[:160]}" for e in items]
