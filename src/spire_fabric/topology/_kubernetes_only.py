"""What of a topology the Kubernetes target runs: everything, sidecars behind one switch.

Sidecars render for Kubernetes as containers in the workload's pod (see
`render.kubernetes._workloads`). When :func:`sidecars_on_kubernetes` says no (the one
switch, :data:`KUBERNETES_SIDECARS`, on since the cluster tests passed with it, which the
environment variable ``SPIRE_FABRIC_KUBERNETES_SIDECARS=1``/``0`` overrides for a run) the
target leaves sidecar-carrying workloads out: with the agents that only they use and the
run options of other workloads that point at them (`--inventory {url:inventory}` goes with
inventory), and says so in one line
(:func:`local_only_notes`) in `plan` and `up`: never silently.

With sidecars on, a workload's ``kubernetes.agent`` replaces its ``agent`` (locally every
process is one uid, so a ghostunnel sidecar needs an agent of its own; on Kubernetes pods
are told apart by their k8s selectors) and the agents no workload uses any more are left out
with the workloads' old agents, so the clusters need no node per local-only agent.

With ``monitoring:`` every cluster gains one namespace, :data:`MONITORING_NAMESPACE`, for its
Prometheus (and the Alertmanager of the cluster that evaluates the rules): apart from the
servers' and workloads', so the one pod that holds a ServiceAccount token able to list pods
shares a namespace with nothing else (docs/monitoring.md).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from spire_fabric.topology._model import LocalRun, Topology, Workload
from spire_fabric.topology._workload_run import PlaceholderError, placeholders

__all__ = ["KUBERNETES_SIDECARS", "MONITORING_NAMESPACE", "KubernetesView", "kubernetes_view",
           "local_only_note", "local_only_notes", "monitoring_cluster",
           "sidecars_on_kubernetes"]

MONITORING_NAMESPACE = "spire-monitoring"

# The one switch: whether the Kubernetes target runs sidecar-carrying workloads. On since the
# cluster tests (tests/kubernetes_clusters/test_installer.py) passed with it; 0 in the
# environment variable runs a deployment without them.
KUBERNETES_SIDECARS = True
SIDECARS_ENV = "SPIRE_FABRIC_KUBERNETES_SIDECARS"


def sidecars_on_kubernetes() -> bool:
    """:data:`KUBERNETES_SIDECARS`, unless ``SPIRE_FABRIC_KUBERNETES_SIDECARS`` is ``1``
    or ``0`` (read on every call, so a test run can turn it on for its subprocesses)."""
    value = os.environ.get(SIDECARS_ENV, "").strip()
    if value in ("0", "1"):
        return value == "1"
    return KUBERNETES_SIDECARS


@dataclass(frozen=True)
class KubernetesView:
    """The topology the Kubernetes target runs, and the workloads it left out."""

    topology: Topology
    left_out: tuple[str, ...]  # workloads


def local_only_note(left_out: tuple[str, ...]) -> str:
    """The one line `plan` and `up` print for the Kubernetes target ('' if nothing)."""
    if not left_out:
        return ""
    return (f"{', '.join(left_out)}: left out with their sidecars ({SIDECARS_ENV} is not 1); "
            "unset it to run them on Kubernetes too")


def local_only_notes(view: KubernetesView) -> list[str]:
    """Every line `plan` and `up` print for what the Kubernetes target leaves out."""
    return [local_only_note(view.left_out)] if view.left_out else []


def kubernetes_view(topology: Topology, *, sidecars: bool | None = None) -> KubernetesView:
    """``topology`` as the Kubernetes target runs it (see the module docstring): with
    ``sidecars`` (default :func:`sidecars_on_kubernetes`) every workload on its
    ``kubernetes.agent``, else without its sidecar-carrying workloads; with the monitoring
    namespace in each cluster when it has ``monitoring:``."""
    if sidecars is None:
        sidecars = sidecars_on_kubernetes()
    if topology.monitoring is not None:
        topology = dataclasses.replace(topology, clusters=tuple(
            c if MONITORING_NAMESPACE in c.namespaces
            else dataclasses.replace(c, namespaces=(*c.namespaces, MONITORING_NAMESPACE))
            for c in topology.clusters))  # fmt: skip
    if sidecars:
        return KubernetesView(_on_kubernetes_agents(topology), ())
    dropped = {w.name for w in topology.workloads if w.sidecars}
    if not dropped:
        return KubernetesView(topology, ())
    kept = [w for w in topology.workloads if w.name not in dropped]
    used_agents = {w.agent for w in kept}
    dropped_agents = {w.agent for w in topology.workloads if w.name in dropped} - used_agents
    view = dataclasses.replace(
        topology,
        workloads=tuple(_without_references(w, dropped) for w in kept),
        agents=tuple(a for a in topology.agents if a.name not in dropped_agents),
    )
    return KubernetesView(view, tuple(w.name for w in topology.workloads if w.name in dropped))


def _on_kubernetes_agents(topology: Topology) -> Topology:
    """Every workload with a ``kubernetes.agent`` moved onto it; the agents it leaves, when
    no other workload uses them, left out."""
    moved = [w for w in topology.workloads
             if w.kubernetes is not None and w.kubernetes.agent not in (None, w.agent)]
    if not moved:
        return topology
    workloads = tuple(
        dataclasses.replace(w, agent=w.kubernetes.agent,
                            kubernetes=dataclasses.replace(w.kubernetes, agent=None))
        if w in moved and w.kubernetes is not None and w.kubernetes.agent is not None else w
        for w in topology.workloads)  # fmt: skip
    left = {w.agent for w in moved} - {w.agent for w in workloads}
    return dataclasses.replace(topology, workloads=workloads,
                               agents=tuple(a for a in topology.agents if a.name not in left))


def monitoring_cluster(topology: Topology) -> str:
    """The cluster whose Prometheus evaluates the rules, holds the Alertmanager and federates
    the other clusters' Prometheus: the edge workload's (most of what the rules watch runs
    beside it), else the first cluster."""
    m = topology.monitoring
    if m is not None and m.edge_workload is not None:
        w = topology.workload(m.edge_workload)
        agent = topology.agent(w.agent)
        if w.kubernetes is not None and agent.kubernetes is not None:
            return agent.kubernetes.cluster
    return topology.clusters[0].name


def _names(text: str, dropped: set[str]) -> bool:
    try:
        return any(p.workload in dropped for p in placeholders(text))
    except PlaceholderError:
        return False


def _without_references(w: Workload, dropped: set[str]) -> Workload:
    """``w`` without the run options and env entries that name a dropped workload (an
    option's flag goes with its value)."""
    run = w.run
    if run is None or not any(_names(t, dropped) for t in (*run.args, *run.env)):
        return w
    args: list[str] = []
    for arg in run.args:
        if _names(arg, dropped):
            if args and args[-1].startswith("--"):
                args.pop()
            continue
        args.append(arg)
    env = tuple(e for e in run.env if not _names(e, dropped))
    new_run: LocalRun = dataclasses.replace(run, args=tuple(args), env=env)
    return dataclasses.replace(w, run=new_run)
