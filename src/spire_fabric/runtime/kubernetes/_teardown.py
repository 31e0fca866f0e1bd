"""`down` on Kubernetes: delete exactly what carries our labels, namespaces last, and drop
the node labels we set. A CRD is shared by every controller manager of its cluster: one
that custom resources we did not apply still use (another topology's, a user's) is kept."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import spire_fabric.runtime.kubernetes._objects as objects
from spire_fabric.render.kubernetes import (
    CRDS,
    GROUP,
    LABEL_CLUSTER,
    LABEL_MANAGED_BY,
    LABEL_TOPOLOGY,
    MANAGED_BY,
)
from spire_fabric.runtime.kubernetes._clusters import ClusterApi
from spire_fabric.runtime.kubernetes._placement import unlabel_nodes
from spire_fabric.topology import Topology

__all__ = ["Teardown", "cluster_label"]

Obj = objects.Obj


def cluster_label(o: Obj) -> str:
    return str(((o.get("metadata") or {}).get("labels") or {}).get(LABEL_CLUSTER, ""))


@dataclass
class Teardown:
    """What one `down` deleted (``cluster: Kind ns/name``) and kept (with why)."""

    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def run(self, topology: Topology, clusters: Mapping[str, ClusterApi], timeout: float) -> None:
        name = topology.name
        deleted: dict[str, list[objects.ObjectRef]] = {}
        for cluster, conn in clusters.items():
            ours = []
            mine = [o for o in objects.list_ours(conn, name) if cluster_label(o) == cluster]
            for o in mine + _shared_crds(topology, conn):
                if o["kind"] == "CustomResourceDefinition":
                    others = objects.foreign_custom_resources(conn, o, name)
                    if others:
                        self.kept.append(
                            f"CRD {o['metadata']['name']} in {cluster}: still used by "
                            + ", ".join(others[:5]) + (" …" if len(others) > 5 else "")
                        )
                        continue
                ours.append(objects.ObjectRef.of(o))
            order = {k: i for i, (_, k) in enumerate(objects.OWNED_KINDS)}
            ours.sort(key=lambda r: order.get(r.kind, 0))
            namespaced = [r for r in ours if r.kind != "Namespace"]
            deleted[cluster] = objects.delete(conn, namespaced)
        for cluster, conn in clusters.items():
            objects.wait_gone(conn, deleted[cluster], timeout)
            self._note(cluster, deleted[cluster])
        for cluster, conn in clusters.items():
            namespaces = [
                objects.ObjectRef.of(o)
                for o in objects.list_ours(conn, name)
                if o["kind"] == "Namespace" and cluster_label(o) == cluster
            ]
            deleted[cluster] = objects.delete(conn, namespaces)
        for cluster, conn in clusters.items():
            objects.wait_gone(conn, deleted[cluster], timeout)
            self._note(cluster, deleted[cluster])
        unlabel_nodes(clusters)

    def _note(self, cluster: str, refs: list[objects.ObjectRef]) -> None:
        for r in refs:
            where = f"{r.namespace}/{r.name}" if r.namespace else r.name
            self.deleted.append(f"{cluster}: {r.kind} {where}")


def _shared_crds(topology: Topology, conn: ClusterApi) -> list[Obj]:
    """Our CRDs that another topology of ours re-applied (and so re-labelled) since we
    did: still ours to remove when nothing else uses them."""
    if topology.kubernetes.registration != "controller-manager":
        return []
    found = []
    for plural, _, _ in CRDS.values():
        ref = objects.ObjectRef(
            "apiextensions.k8s.io/v1", "CustomResourceDefinition", "", f"{plural}.{GROUP}"
        )
        live = objects.get_live(conn, ref)
        labels = ((live or {}).get("metadata") or {}).get("labels") or {}
        if live is not None and labels.get(LABEL_MANAGED_BY) == MANAGED_BY \
                and labels.get(LABEL_TOPOLOGY) != topology.name:  # fmt: skip
            found.append({**live, "apiVersion": ref.api_version, "kind": ref.kind})
    return found
