"""topology -> Kubernetes manifests: every object of the design's resource diagram.

Pure and deterministic. :func:`render_kubernetes_objects` gives the objects in apply
order (each labelled with ``spire-fabric.io/cluster`` so the runtime knows where it goes);
:func:`render_kubernetes_manifests` gives the same objects as files
``<cluster>/<NN>-<stage>.yaml``, numbered so ``kubectl apply -R -f`` order works too.
server.conf and agent.conf come from :mod:`spire_fabric.render` unchanged.
"""

from __future__ import annotations

from typing import Any

from spire_fabric.render.kubernetes._assemble import STAGES, staged_objects
from spire_fabric.render.kubernetes._common import (
    CSI_DRIVER_IMAGE,
    CSI_REGISTRAR_IMAGE,
    LABEL_CLUSTER,
    LABEL_TOPOLOGY,
)
from spire_fabric.render.kubernetes._crds import CRDS
from spire_fabric.render.kubernetes._mysql import mysql_secret
from spire_fabric.render.kubernetes._namespaces import pod_security_level
from spire_fabric.render.kubernetes._yaml import dump_documents
from spire_fabric.topology import Topology

__all__ = [
    "CRDS",
    "CSI_DRIVER_IMAGE",
    "CSI_REGISTRAR_IMAGE",
    "LABEL_CLUSTER",
    "LABEL_TOPOLOGY",
    "STAGES",
    "cluster_of",
    "mysql_secret",
    "pod_security_level",
    "render_kubernetes_manifests",
    "render_kubernetes_objects",
    "staged_objects",
]


def render_kubernetes_objects(topology: Topology) -> list[dict[str, Any]]:
    """Every object, in apply order (namespaces, CRDs, RBAC, MySQL, servers, agents,
    workloads, registrations; cluster by cluster). Fresh dicts on every call."""
    return [o for _, _, objects in staged_objects(topology) for o in objects]


def render_kubernetes_manifests(topology: Topology) -> dict[str, str]:
    """Relative path -> multi-document YAML, keys sorted; byte-identical on repeat."""
    files = {
        f"{cluster}/{file}": dump_documents(objects)
        for cluster, file, objects in staged_objects(topology)
    }
    return dict(sorted(files.items()))


def cluster_of(obj: dict[str, Any]) -> str:
    """The cluster an object of :func:`render_kubernetes_objects` belongs to."""
    return str(obj["metadata"]["labels"][LABEL_CLUSTER])
