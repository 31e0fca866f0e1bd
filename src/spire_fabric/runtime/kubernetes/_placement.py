"""Which node each agent runs on: k8s_psat names an agent by its node, so two agents of one
server on one node would evict each other. Agents that share their server and cluster get
a node each, by labels the installer sets (as its own field manager, so `down` drops
exactly those) and the renderer's node selectors ask for."""

from __future__ import annotations

from collections.abc import Mapping

from kubernetes.client.exceptions import ApiException

from spire_fabric.render.kubernetes import agent_node_selector
from spire_fabric.runtime.kubernetes._adapt import node_addresses
from spire_fabric.runtime.kubernetes._clusters import ClusterApi, api_error_message
from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.runtime.kubernetes._objects import Obj, resource
from spire_fabric.topology import Topology

__all__ = ["Placement", "label_nodes", "node_placement", "unlabel_nodes"]

PLACEMENT_MANAGER = "spire-fabric-placement"

Placement = dict[str, dict[str, dict[str, str]]]  # cluster -> node -> labels


def node_placement(topology: Topology, clusters: Mapping[str, ClusterApi]) -> Placement:
    """cluster -> node -> labels for every agent that needs a node of its own."""
    out: Placement = {}
    for c in topology.clusters:
        agents = [
            a for a in topology.agents
            if a.kubernetes is not None and a.kubernetes.cluster == c.name
            and agent_node_selector(topology, a)
        ]  # fmt: skip
        if not agents:
            continue
        nodes = [n for n, _ in node_addresses(clusters[c.name])]
        by_server: dict[str, list[str]] = {}
        for a in agents:
            by_server.setdefault(a.server, []).append(a.name)
        for server, names in by_server.items():
            if len(names) > len(nodes):
                raise KubernetesTargetError(
                    f"cluster {c.name} ({clusters[c.name].context}) has "
                    f"{len(nodes)} Ready node(s) but {len(names)} agents of {server} must "
                    f"each have a node of their own ({', '.join(names)}): k8s_psat names "
                    "an agent by its node, so two on one node would evict each other"
                )
            for node, agent in zip(nodes, names, strict=False):
                sel = agent_node_selector(topology, topology.agent(agent)) or {}
                out.setdefault(c.name, {}).setdefault(node, {}).update(sel)
    return out


def label_nodes(placement: Placement, clusters: Mapping[str, ClusterApi]) -> None:
    for cluster, nodes in placement.items():
        for node, labels in nodes.items():
            body = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": node, "labels": labels}}  # fmt: skip
            _apply_as(clusters[cluster], body)


def unlabel_nodes(clusters: Mapping[str, ClusterApi]) -> None:
    """Applying an empty object as the placement manager drops every label it set."""
    for conn in clusters.values():
        for node, _ in node_addresses(conn):
            live = conn.core.read_node(node)
            managers = {m.manager for m in live.metadata.managed_fields or []}
            if PLACEMENT_MANAGER in managers:
                _apply_as(conn, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})


def _apply_as(conn: ClusterApi, body: Obj) -> None:
    res = resource(conn, body["apiVersion"], body["kind"])
    try:
        res.server_side_apply(body=body, name=body["metadata"]["name"],
                              field_manager=PLACEMENT_MANAGER, force_conflicts=True)  # fmt: skip
    except ApiException as err:
        raise KubernetesTargetError(
            f"cannot label node {body['metadata']['name']} in {conn.where()}: "
            f"{api_error_message(err)}"
        ) from err
