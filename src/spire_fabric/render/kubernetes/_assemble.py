"""Puts every object of every cluster together in apply order and names the files."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

from spire_fabric.render.kubernetes._agents import render_agent_objects, render_csi_driver
from spire_fabric.render.kubernetes._common import (
    LABEL_CLUSTER,
    Obj,
    csi_agents,
    k8s_agents,
    k8s_servers,
)
from spire_fabric.render.kubernetes._controller_manager import render_registrations
from spire_fabric.render.kubernetes._crds import render_crds
from spire_fabric.render.kubernetes._mysql import render_mysql
from spire_fabric.render.kubernetes._namespaces import render_namespaces
from spire_fabric.render.kubernetes._rbac import render_rbac, render_service_accounts
from spire_fabric.render.kubernetes._servers import render_server_objects
from spire_fabric.render.kubernetes._workloads import render_workload, workload_cluster
from spire_fabric.topology import Server, Topology, controller_manager_enabled


@dataclass(frozen=True)
class Stage:
    """One apply step: everything it holds may rely on the stages before it."""

    file: str
    render: Callable[[Topology, str], list[Obj]]


def _crds(t: Topology, cluster: str) -> list[Obj]:
    wanted = any(
        controller_manager_enabled(t, s)
        for s in k8s_servers(t)
        if s.kubernetes is not None and s.kubernetes.cluster == cluster
    )
    return render_crds(t, cluster) if wanted else []


def _rbac(t: Topology, cluster: str) -> list[Obj]:
    return render_service_accounts(t, cluster) + render_rbac(t, cluster)


def _servers_of(t: Topology, cluster: str) -> list[Server]:
    return [s for s in k8s_servers(t) if s.kubernetes and s.kubernetes.cluster == cluster]


def _mysql(t: Topology, cluster: str) -> list[Obj]:
    return [o for s in _servers_of(t, cluster) for o in render_mysql(t, s)]


def _servers(t: Topology, cluster: str) -> list[Obj]:
    return [o for s in _servers_of(t, cluster) for o in render_server_objects(t, s)]


def _agents(t: Topology, cluster: str) -> list[Obj]:
    out: list[Obj] = []
    for a in k8s_agents(t):
        if a.kubernetes is not None and a.kubernetes.cluster == cluster:
            out += render_agent_objects(t, a)
    for a in csi_agents(t):
        if a.kubernetes is not None and a.kubernetes.cluster == cluster:
            out += render_csi_driver(t, a)
    return out


def _workloads(t: Topology, cluster: str) -> list[Obj]:
    out: list[Obj] = []
    for w in t.workloads:
        if w.kubernetes is not None and workload_cluster(t, w) == cluster:
            out += render_workload(t, w)
    return out


def _registrations(t: Topology, cluster: str) -> list[Obj]:
    return [o for s in _servers_of(t, cluster) for o in render_registrations(t, s)]


STAGES: tuple[Stage, ...] = (
    Stage("00-namespaces.yaml", render_namespaces),
    Stage("01-crds.yaml", _crds),
    Stage("02-rbac.yaml", _rbac),
    Stage("03-mysql.yaml", _mysql),
    Stage("04-servers.yaml", _servers),
    Stage("05-agents.yaml", _agents),
    Stage("06-workloads.yaml", _workloads),
    Stage("07-registrations.yaml", _registrations),
)


def _identity(o: Obj) -> tuple[str, str, str, str]:
    m = o["metadata"]
    return (m["labels"][LABEL_CLUSTER], o["kind"], m.get("namespace", ""), m["name"])


def _dedupe(objects: list[Obj]) -> list[Obj]:
    """The same object may come from two owners (a service account shared by agents and a
    workload); identical copies collapse, different ones are a topology conflict."""
    seen: dict[tuple[str, str, str, str], Obj] = {}
    out: list[Obj] = []
    for o in objects:
        key = _identity(o)
        if key in seen:
            if seen[key] != o:
                raise ValueError(f"two different objects named {'/'.join(key)}")
            continue
        seen[key] = o
        out.append(o)
    return out


def staged_objects(topology: Topology) -> list[tuple[str, str, list[Obj]]]:
    """(cluster, file, objects) in apply order: clusters as declared, then the stages."""
    out: list[tuple[str, str, list[Obj]]] = []
    for cluster in topology.clusters:
        for stage in STAGES:
            objects = stage.render(topology, cluster.name)
            if objects:
                out.append((cluster.name, stage.file, copy.deepcopy(objects)))
    seen = _dedupe([o for _, _, objs in out for o in objs])
    keep = {id(o) for o in seen}
    return [(c, f, [o for o in objs if id(o) in keep]) for c, f, objs in out]
