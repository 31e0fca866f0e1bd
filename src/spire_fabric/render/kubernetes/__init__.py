"""topology -> Kubernetes manifests: every object of the design's resource diagram, the
installer's Secrets and probe pods included. The only maker of Kubernetes objects.

Pure and deterministic. :data:`STAGES` is the one apply order: :func:`staged_objects` gives
(cluster, file, objects) per stage, :func:`render_kubernetes_manifests` the same objects as
files ``<cluster>/<NN>-<stage>.yaml`` numbered by it (``kubectl apply`` in file-name order
is `up`'s order). Every object is labelled with ``spire-fabric.io/cluster`` so the runtime
knows where it goes. server.conf and agent.conf come from :mod:`spire_fabric.render`
unchanged. The names below are the vocabulary the installer and tests share with the
rendered objects (labels, selectors, secret names); nothing outside this package needs
its private modules.
"""

from __future__ import annotations

from typing import Any

from spire_fabric.render.kubernetes._agents import join_token_secret_name
from spire_fabric.render.kubernetes._assemble import STAGES, Stage, staged_objects
from spire_fabric.render.kubernetes._common import (
    LABEL_CLUSTER,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_TOPOLOGY,
    LABEL_WORKLOAD,
    MANAGED_BY,
    agent_node_selector,
    selector_labels,
    workload_socket_address,
)
from spire_fabric.render.kubernetes._controller_manager import (
    controller_manager_lease_name,
    k8s_selectable,
    workload_pod_labels,
)
from spire_fabric.render.kubernetes._crds import CRDS, GROUP
from spire_fabric.render.kubernetes._monitoring import (
    ALERTMANAGER,
    ALERTMANAGER_PORT,
    PROMETHEUS,
    PROMETHEUS_PORT,
)
from spire_fabric.render.kubernetes._monitoring import COMPONENT as MONITORING_COMPONENT
from spire_fabric.render.kubernetes._mysql import (
    mysql_dns_names,
    mysql_instance,
    mysql_secret,
    mysql_tls_secret,
)
from spire_fabric.render.kubernetes._namespaces import pod_security_level
from spire_fabric.render.kubernetes._probe import PROBE_LABEL, identity_probe_pod
from spire_fabric.render.kubernetes._secrets import (
    DatastoreTlsPem,
    InstallerSecrets,
    MySqlPasswords,
    SigningCaPem,
    join_token_secret,
    upstream_ca_secret,
)
from spire_fabric.render.kubernetes._servers import upstream_ca_secret_name
from spire_fabric.render.kubernetes._workloads import (
    SVID_DIR,
    uses_files,
    workload_cluster,
    workload_command,
    workload_files_secret,
)
from spire_fabric.render.kubernetes._yaml import dump_documents
from spire_fabric.topology import Topology

__all__ = [
    "ALERTMANAGER",
    "ALERTMANAGER_PORT",
    "CRDS",
    "GROUP",
    "LABEL_CLUSTER",
    "LABEL_COMPONENT",
    "LABEL_MANAGED_BY",
    "LABEL_NAME",
    "LABEL_TOPOLOGY",
    "LABEL_WORKLOAD",
    "MANAGED_BY",
    "MONITORING_COMPONENT",
    "PROBE_LABEL",
    "PROMETHEUS",
    "PROMETHEUS_PORT",
    "STAGES",
    "SVID_DIR",
    "DatastoreTlsPem",
    "InstallerSecrets",
    "MySqlPasswords",
    "SigningCaPem",
    "Stage",
    "agent_node_selector",
    "cluster_of",
    "controller_manager_lease_name",
    "identity_probe_pod",
    "join_token_secret",
    "join_token_secret_name",
    "k8s_selectable",
    "mysql_dns_names",
    "mysql_instance",
    "mysql_secret",
    "mysql_tls_secret",
    "pod_security_level",
    "render_kubernetes_manifests",
    "render_kubernetes_objects",
    "selector_labels",
    "staged_objects",
    "upstream_ca_secret",
    "upstream_ca_secret_name",
    "uses_files",
    "workload_cluster",
    "workload_command",
    "workload_files_secret",
    "workload_pod_labels",
    "workload_socket_address",
]


def render_kubernetes_objects(
    topology: Topology, secrets: InstallerSecrets | None = None
) -> list[dict[str, Any]]:
    """Every object, in apply order (the :data:`STAGES`, cluster by cluster). Fresh dicts
    on every call."""
    return [o for _, _, objects in staged_objects(topology, secrets) for o in objects]


def render_kubernetes_manifests(
    topology: Topology, secrets: InstallerSecrets | None = None
) -> dict[str, str]:
    """Relative path -> multi-document YAML, keys sorted; byte-identical on repeat."""
    files = {
        f"{cluster}/{file}": dump_documents(objects)
        for cluster, file, objects in staged_objects(topology, secrets)
    }
    return dict(sorted(files.items()))


def cluster_of(obj: dict[str, Any]) -> str:
    """The cluster an object of :func:`render_kubernetes_objects` belongs to."""
    return str(obj["metadata"]["labels"][LABEL_CLUSTER])
