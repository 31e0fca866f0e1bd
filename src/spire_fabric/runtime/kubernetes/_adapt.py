"""The topology as these clusters run it: node addresses read from the live nodes (where
the topology does not fix them), images and the socket mode as the settings say."""

from __future__ import annotations

import dataclasses

from spire_fabric.runtime.kubernetes._clusters import ClusterApi
from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.runtime.kubernetes._state import KubernetesSettings
from spire_fabric.topology import (
    IMAGE_ROLES,
    MySqlDatastore,
    Topology,
    kubernetes_view,
    unknown_image_role,
)

__all__ = ["IMAGE_ROLES", "adapt", "node_addresses"]


def node_addresses(conn: ClusterApi) -> list[tuple[str, str]]:
    """(node name, InternalIP) of every Ready node, by name."""
    from kubernetes.client.exceptions import ApiException

    from spire_fabric.runtime.kubernetes._clusters import api_error_message

    try:
        nodes = conn.core.list_node().items
    except ApiException as err:
        if err.status == 403:
            raise KubernetesTargetError(
                f"no permission in {conn.where()}: cannot list nodes (cluster-wide): "
                f"{api_error_message(err)}"
            ) from err
        raise
    out = []
    for node in nodes:
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        ip = next((a.address for a in node.status.addresses or [] if a.type == "InternalIP"), None)
        if ready and ip:
            out.append((node.metadata.name, ip))
    return sorted(out)


def adapt(
    topology: Topology, clusters: dict[str, ClusterApi], settings: KubernetesSettings
) -> Topology:
    # sidecar-carrying workloads are local-only in this release (see kubernetes_view)
    topology = kubernetes_view(topology).topology
    refused = unknown_image_role(settings.images)
    if refused:
        raise KubernetesTargetError(refused)
    new_clusters = []
    for c in topology.clusters:
        if c.node_address is None and c.name in clusters:
            nodes = node_addresses(clusters[c.name])
            if not nodes:
                raise KubernetesTargetError(f"{clusters[c.name].where()} has no Ready node")
            c = dataclasses.replace(c, node_address=nodes[0][1])
        new_clusters.append(c)
    overrides = {r: ref for r, ref in settings.images.items() if r != "mysql"}
    images = dataclasses.replace(topology.kubernetes.images, **overrides)
    k = dataclasses.replace(topology.kubernetes, images=images)
    if settings.workload_socket:
        k = dataclasses.replace(k, workload_socket=settings.workload_socket)  # type: ignore[arg-type]
    servers = []
    for s in topology.servers:
        sk = s.kubernetes
        mysql = settings.images.get("mysql")
        if sk is not None and mysql and isinstance(sk.datastore, MySqlDatastore):
            inst = sk.datastore.instance
            if inst is not None:
                ds = dataclasses.replace(
                    sk.datastore, instance=dataclasses.replace(inst, image=mysql)
                )
                s = dataclasses.replace(s, kubernetes=dataclasses.replace(sk, datastore=ds))
        servers.append(s)
    return dataclasses.replace(
        topology, clusters=tuple(new_clusters), kubernetes=k, servers=tuple(servers)
    )
