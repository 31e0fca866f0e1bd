"""Puts every object of every cluster together in apply order and names the files.

:data:`STAGES` is the one apply order: the rendered files are numbered by it (so
``kubectl apply`` of the files in name order is `up`'s order) and `up` applies stage by
stage from it, doing its SPIRE API steps between the stages named in
:attr:`Stage.then`."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

from spire_fabric.render.kubernetes._agents import render_agent_objects
from spire_fabric.render.kubernetes._common import (
    LABEL_CLUSTER,
    Obj,
    csi_agents,
    k8s_agents,
    k8s_servers,
)
from spire_fabric.render.kubernetes._controller_manager import render_registrations
from spire_fabric.render.kubernetes._crds import render_crds
from spire_fabric.render.kubernetes._csi import render_csi_driver
from spire_fabric.render.kubernetes._monitoring import render_monitoring
from spire_fabric.render.kubernetes._mysql import render_mysql
from spire_fabric.render.kubernetes._namespaces import render_namespaces
from spire_fabric.render.kubernetes._network_policies import render_network_policies
from spire_fabric.render.kubernetes._rbac import render_rbac, render_service_accounts
from spire_fabric.render.kubernetes._secrets import (
    InstallerSecrets,
    join_token_secret,
    render_installer_secrets,
)
from spire_fabric.render.kubernetes._servers import render_server_objects
from spire_fabric.render.kubernetes._workloads import render_workload, workload_cluster
from spire_fabric.topology import (
    Server,
    Topology,
    agent_node_attestor,
    controller_manager_enabled,
    kubernetes_view,
)

Secrets = InstallerSecrets | None


@dataclass(frozen=True)
class Stage:
    """One apply step: everything it holds may rely on the stages before it.

    ``title`` is what `up` shows while it applies the stage; ``then`` names the installer
    step that follows it (``federation``: bundles bootstrapped through the Server API,
    nodes labelled for agents and join tokens minted, once the servers are ready)."""

    file: str
    title: str
    render: Callable[[Topology, str, Secrets], list[Obj]]
    then: str | None = None


def _namespaces(t: Topology, cluster: str, _: Secrets) -> list[Obj]:
    """Each namespace with its NetworkPolicies: a pod of ours never runs unfenced."""
    return render_namespaces(t, cluster) + render_network_policies(t, cluster)


def _crds(t: Topology, cluster: str, _: Secrets) -> list[Obj]:
    wanted = any(
        controller_manager_enabled(t, s)
        for s in k8s_servers(t)
        if s.kubernetes is not None and s.kubernetes.cluster == cluster
    )
    return render_crds(t, cluster) if wanted else []


def _rbac(t: Topology, cluster: str, _: Secrets) -> list[Obj]:
    return render_service_accounts(t, cluster) + render_rbac(t, cluster)


def _servers_of(t: Topology, cluster: str) -> list[Server]:
    return [s for s in k8s_servers(t) if s.kubernetes and s.kubernetes.cluster == cluster]


def _secrets(t: Topology, cluster: str, values: Secrets) -> list[Obj]:
    return render_installer_secrets(t, cluster, values)


def _mysql(t: Topology, cluster: str, values: Secrets) -> list[Obj]:
    tls = values.mysql_tls if values is not None else {}
    return [o for s in _servers_of(t, cluster) for o in render_mysql(t, s, tls.get(s.name))]


def _servers(t: Topology, cluster: str, _: Secrets) -> list[Obj]:
    return [o for s in _servers_of(t, cluster) for o in render_server_objects(t, s)]


def _agents(t: Topology, cluster: str, values: Secrets) -> list[Obj]:
    out: list[Obj] = []
    tokens = values.join_tokens if values is not None else {}
    for a in k8s_agents(t):
        if a.kubernetes is not None and a.kubernetes.cluster == cluster:
            if agent_node_attestor(a, "kubernetes") == "join_token":
                out.append(join_token_secret(t, a, tokens.get(a.name)))
            out += render_agent_objects(t, a)
    for a in csi_agents(t):
        if a.kubernetes is not None and a.kubernetes.cluster == cluster:
            out += render_csi_driver(t, a)
    return out


def _workloads(t: Topology, cluster: str, _: Secrets) -> list[Obj]:
    out: list[Obj] = []
    for w in t.workloads:
        if w.kubernetes is not None and workload_cluster(t, w) == cluster:
            out += render_workload(t, w)
    return out


def _monitoring(t: Topology, cluster: str, _: Secrets) -> list[Obj]:
    return render_monitoring(t, cluster)


def _registrations(t: Topology, cluster: str, _: Secrets) -> list[Obj]:
    return [o for s in _servers_of(t, cluster) for o in render_registrations(t, s)]


# Registrations come before the workloads that need them to get an identity.
STAGES: tuple[Stage, ...] = (
    Stage("00-namespaces.yaml", "namespaces and network policies", _namespaces),
    Stage("01-crds.yaml", "CRDs (until Established)", _crds),
    Stage("02-rbac.yaml", "RBAC and service accounts", _rbac),
    Stage("03-secrets.yaml", "secrets (database passwords, signing CAs)", _secrets),
    Stage("04-mysql.yaml", "MySQL (until ready)", _mysql),
    Stage("05-servers.yaml", "SPIRE servers (until ready)", _servers, then="federation"),
    Stage("06-agents.yaml", "SPIRE agents (until ready)", _agents),
    Stage("07-registrations.yaml", "registrations", _registrations),
    Stage("08-workloads.yaml", "workloads (until ready)", _workloads),
    # last: what it watches exists by then, so its first scrapes find every target
    Stage("09-monitoring.yaml", "Prometheus and Alertmanager (until ready)", _monitoring),
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


def staged_objects(
    topology: Topology, secrets: InstallerSecrets | None = None
) -> list[tuple[str, str, list[Obj]]]:
    """(cluster, file, objects) in apply order: clusters as declared, then the stages.
    ``secrets`` fills the installer's Secrets (skeletons without). Workloads with sidecars
    are left out (local-only in this release: :func:`~spire_fabric.topology.kubernetes_view`).
    """
    topology = kubernetes_view(topology).topology
    out: list[tuple[str, str, list[Obj]]] = []
    for cluster in topology.clusters:
        for stage in STAGES:
            objects = stage.render(topology, cluster.name, secrets)
            if objects:
                out.append((cluster.name, stage.file, copy.deepcopy(objects)))
    seen = _dedupe([o for _, _, objs in out for o in objs])
    keep = {id(o) for o in seen}
    return [(c, f, [o for o in objs if id(o) in keep]) for c, f, objs in out]
