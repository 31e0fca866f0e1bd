"""Two Kubernetes clusters for tests, from any kubeconfig that has a context for each.

The source design names the clusters `upstream-spire-cluster` and
`downstream-spire-cluster`; a user's clusters (kind, k3d, a managed one) are usually named
otherwise, so the kubeconfig and both context names come from the environment:

    SPIRE_FABRIC_KUBECONFIG=~/.kube/config \\
    SPIRE_FABRIC_UPSTREAM_CONTEXT=kind-up SPIRE_FABRIC_DOWNSTREAM_CONTEXT=kind-down pytest ...

`two_clusters()` checks that both contexts exist and answer, and describes each cluster as
the `kube_clusters` fixture yields it. Nothing here creates or changes a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from spire_fabric.errors import SpireFabricError

KUBECONFIG_ENV = "SPIRE_FABRIC_KUBECONFIG"
UPSTREAM_CONTEXT_ENV = "SPIRE_FABRIC_UPSTREAM_CONTEXT"
DOWNSTREAM_CONTEXT_ENV = "SPIRE_FABRIC_DOWNSTREAM_CONTEXT"
UPSTREAM = "upstream-spire-cluster"
DOWNSTREAM = "downstream-spire-cluster"
_API_TIMEOUT_S = 10

__all__ = [
    "DOWNSTREAM",
    "DOWNSTREAM_CONTEXT_ENV",
    "KUBECONFIG_ENV",
    "UPSTREAM",
    "UPSTREAM_CONTEXT_ENV",
    "KubeconfigError",
    "cluster_contexts",
    "two_clusters",
]


class KubeconfigError(SpireFabricError, ValueError):
    """The kubeconfig is missing, unreadable, lacks a context, or a cluster does not answer."""


def cluster_contexts() -> dict[str, str]:
    """The design's cluster name -> the kubeconfig context that is that cluster."""
    return {
        UPSTREAM: os.environ.get(UPSTREAM_CONTEXT_ENV) or UPSTREAM,
        DOWNSTREAM: os.environ.get(DOWNSTREAM_CONTEXT_ENV) or DOWNSTREAM,
    }


def two_clusters(kubeconfig: str | Path, contexts: dict[str, str] | None = None
                 ) -> dict[str, Any]:
    """Describe the two clusters of `kubeconfig`, after checking each context answers.

    Returns `{"kubeconfig": path, "clusters": {name: {"context", "api", "node_ip",
    "nodes": [{"name", "ip", "pod_cidr"}, ...]}}}`, keyed by the design's cluster names
    (`UPSTREAM`, `DOWNSTREAM`); nodes are sorted by name, `node_ip` is the first's.
    """
    path = Path(kubeconfig).expanduser()
    contexts = contexts if contexts is not None else cluster_contexts()
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KubeconfigError(f"kubeconfig {path}: cannot be read ({exc})") from exc
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {path}: not a kubeconfig (no mapping at the top)")
    known = {c.get("name"): c.get("context") or {} for c in doc.get("contexts") or []
             if isinstance(c, dict)}
    servers = {c.get("name"): (c.get("cluster") or {}).get("server")
               for c in doc.get("clusters") or [] if isinstance(c, dict)}
    for name, context in contexts.items():  # every context checked before any cluster
        if context not in known:
            raise KubeconfigError(
                f"kubeconfig {path}: no context {context!r} for the {name} (contexts: "
                f"{', '.join(sorted(str(k) for k in known)) or 'none'}); set "
                f"{UPSTREAM_CONTEXT_ENV} / {DOWNSTREAM_CONTEXT_ENV}")
    clusters: dict[str, Any] = {}
    for name, context in contexts.items():
        nodes = _nodes(path, context)
        clusters[name] = {
            "context": context,
            "api": servers.get(known[context].get("cluster")),
            "node_ip": nodes[0]["ip"],
            "nodes": nodes,
        }
    return {"kubeconfig": str(path), "clusters": clusters}


def _nodes(path: Path, context: str) -> list[dict[str, Any]]:
    from kubernetes import client, config

    try:
        api = config.new_client_from_config(str(path), context=context)
        with api:
            items = client.CoreV1Api(api).list_node(_request_timeout=_API_TIMEOUT_S).items
    except Exception as exc:  # the client raises many kinds; all mean "does not answer"
        raise KubeconfigError(
            f"context {context!r} of {path}: cannot list nodes ({type(exc).__name__}: "
            f"{_first_line(exc)})") from exc
    nodes = []
    for node in items:
        status_addresses = (node.status.addresses if node.status else None) or []
        addresses = {a.type: a.address for a in status_addresses}
        nodes.append({"name": node.metadata.name if node.metadata else "",
                      "ip": addresses.get("InternalIP"),
                      "pod_cidr": node.spec.pod_cidr if node.spec else None})
    nodes.sort(key=lambda n: str(n["name"]))
    if not nodes:
        raise KubeconfigError(f"context {context!r} of {path}: the cluster has no nodes")
    return nodes


def _first_line(exc: Exception) -> str:
    text = (str(exc).splitlines() or [""])[0]
    return text if len(text) <= 200 else text[:197] + "..."
