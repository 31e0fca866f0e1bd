"""The entries a Kubernetes deployment should hold, so `verify` and `plan` can compare.

With the controller manager, entries follow the pods: one per pod of a ClusterSPIFFEID's
workload (selector ``k8s:pod-uid``, parent = the agent of the pod's node, DNS names from
the resource; we leave ``autoPopulateDNSNames`` off, so none from Services), and one per
ClusterStaticEntry. This restates spire-controller-manager 0.6.3's rules
(``pkg/spireentry/entries.go``) so a wrong or missing entry shows as a difference.

Only *settled* pods count (:func:`settled_pod`): not the identity probe pods that `verify`,
`plan` and the drills' load start and delete within seconds (they carry the workload's label,
so the controller manager gives each its own entry, always a moment late), and not a pod
being deleted. Counting them compared a snapshot of pods with a snapshot of entries that the
controller manager had not caught up with: `entries:<server>` went red while a load polled a
registered-only workload's identity (issue 23, drill (a)), with no entry actually wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spire_fabric.identity import SpiffeId, node_alias_id, spire_server_id
from spire_fabric.render.kubernetes import PROBE_LABEL, k8s_selectable, workload_pod_labels
from spire_fabric.runtime.kubernetes._clusters import ClusterApi, label_selector
from spire_fabric.server import Entry, Selector
from spire_fabric.topology import Topology, Workload, workload_selectors


def settled_pod(pod: Any) -> bool:
    """A pod whose entry the controller manager is expected to hold: scheduled, not being
    deleted, and not an identity probe pod (whose entry comes and goes with it in seconds;
    the probe getting its identity is what proves that entry)."""
    labels = pod.metadata.labels or {}
    return bool(pod.spec.node_name) and pod.metadata.deletion_timestamp is None and (
        PROBE_LABEL not in labels
    )


def _options(w: Workload) -> dict[str, Any]:
    return {
        "x509_svid_ttl": int(w.x509_svid_ttl.total_seconds()) if w.x509_svid_ttl else 0,
        "jwt_svid_ttl": int(w.jwt_svid_ttl.total_seconds()) if w.jwt_svid_ttl else 0,
        "federates_with": w.federates_with,
        "downstream": w.downstream,
        "hint": w.hint or "",
    }


def controller_manager_entries(
    t: Topology, clusters: Mapping[str, ClusterApi], server: str
) -> list[Entry]:
    """The entries the server's controller manager must have made, for the pods there are."""
    s = t.server(server)
    td = s.trust_domain
    out: list[Entry] = []
    aliases = set()
    for a in t.agents_of(server):
        k = a.kubernetes
        if k is None or k.node_attestor != "k8s_psat":
            continue
        alias = node_alias_id(td, k.namespace, k.service_account)
        if alias in aliases:
            continue
        aliases.add(alias)
        out.append(
            Entry(
                spiffe_id=alias,
                parent_id=spire_server_id(td),
                selectors=_selectors(
                    (
                        f"k8s_psat:agent_ns:{k.namespace}",
                        f"k8s_psat:agent_sa:{k.service_account}",
                        f"k8s_psat:cluster:{k.cluster}",
                    )
                ),
            )
        )
    for w in t.workloads:
        agent = t.agent(w.agent)
        if agent.server != server:
            continue
        selectors = workload_selectors(w, "kubernetes")
        if not k8s_selectable(selectors):
            ak = agent.kubernetes
            if ak is None or ak.node_attestor != "k8s_psat":
                continue  # rendered for no one: the renderer makes no resource for it
            out.append(
                Entry(
                    spiffe_id=SpiffeId.parse(w.spiffe_id),
                    parent_id=node_alias_id(td, ak.namespace, ak.service_account),
                    selectors=_selectors(selectors),
                    dns_names=tuple(w.dns_names),
                    **_options(w),
                )
            )
            continue
        out += _pod_entries(t, clusters, w, selectors)
    return out


def _pod_entries(
    t: Topology, clusters: Mapping[str, ClusterApi], w: Workload, selectors: tuple[str, ...]
) -> list[Entry]:
    """One entry per scheduled pod the workload's ClusterSPIFFEID selects (its namespace,
    its pod labels), as the controller manager of the server's cluster makes it."""
    agent = t.agent(w.agent)
    sk = t.server(agent.server).kubernetes
    assert sk is not None
    cluster = sk.cluster
    conn = clusters[cluster]
    td = t.server(agent.server).trust_domain
    ns = next(s for s in selectors if s.startswith("k8s:ns:")).removeprefix("k8s:ns:")
    labels = workload_pod_labels(t, w)
    pods = conn.core.list_namespaced_pod(ns, label_selector=label_selector(labels)).items
    out = []
    for pod in pods:
        if not settled_pod(pod):  # not scheduled (the controller manager waits too), a probe
            continue  # or being deleted: its entry is in flux
        node = conn.core.read_node(pod.spec.node_name)
        parent = SpiffeId.parse(f"spiffe://{td}/spire/agent/k8s_psat/{cluster}/{node.metadata.uid}")
        names = list(w.dns_names)
        out.append(
            Entry(
                spiffe_id=SpiffeId.parse(w.spiffe_id),
                parent_id=parent,
                selectors=_selectors(
                    (
                        f"k8s:pod-uid:{pod.metadata.uid}",
                        *(s for s in selectors if not s.startswith("k8s:ns:")),
                    )
                ),
                dns_names=tuple(names),
                **_options(w),
            )
        )
    return out


def _selectors(texts: tuple[str, ...]) -> tuple[Selector, ...]:
    return tuple(Selector.parse(t) for t in texts)
