"""Requests and limits of every container the renderer makes, in one table.

Why both: requests let the scheduler place a pod only where it fits, and limits keep one
runaway container (a flood of API calls, a log loop filling the node's disk) from starving
SPIRE or its neighbours; ephemeral-storage covers the writable layer, emptyDirs and logs.
The numbers fit the 2-core test nodes with room to spare (a whole enterprise cluster
requests about a quarter of a core) and leave headroom over what the programs need: the
Go processes and the Python workloads run in tens of MiB, mysqld with its default 128 MiB
InnoDB buffer pool in a few hundred. CPU limits are generous so a burst (a server signing
a batch of SVIDs at start) is slowed, not stopped.
"""

from __future__ import annotations

from spire_fabric.render.kubernetes._common import Obj

# component -> (requests, limits) as (cpu, memory, ephemeral-storage)
_TABLE: dict[str, tuple[tuple[str, str, str], tuple[str, str, str]]] = {
    "spire-server": (("50m", "64Mi", "64Mi"), ("1", "512Mi", "512Mi")),
    "spire-controller-manager": (("20m", "32Mi", "32Mi"), ("500m", "256Mi", "128Mi")),
    "mysql": (("50m", "384Mi", "64Mi"), ("1", "1Gi", "512Mi")),
    "workload": (("20m", "48Mi", "32Mi"), ("500m", "256Mi", "256Mi")),
    "sidecar": (("10m", "24Mi", "16Mi"), ("500m", "128Mi", "64Mi")),
    # a Python asked once a second by the kubelet, asking the server in turn
    "readiness-gate": (("10m", "48Mi", "16Mi"), ("300m", "128Mi", "64Mi")),
    "identity-probe": (("10m", "32Mi", "16Mi"), ("200m", "128Mi", "64Mi")),
    # about 75 MB resident and 0.4% of a core on the enterprise deployment (docs/monitoring.md);
    # its TSDB is on an emptyDir of 512Mi, inside the ephemeral-storage limit
    "prometheus": (("50m", "128Mi", "64Mi"), ("1", "512Mi", "768Mi")),
    "alertmanager": (("10m", "32Mi", "16Mi"), ("200m", "128Mi", "128Mi")),
}
COMPONENTS = tuple(_TABLE)


def resources(component: str) -> Obj:
    """The ``resources`` of a container of ``component`` (one of :data:`COMPONENTS`)."""
    requests, limits = _TABLE[component]
    keys = ("cpu", "memory", "ephemeral-storage")
    return {"limits": dict(zip(keys, limits, strict=True)),
            "requests": dict(zip(keys, requests, strict=True))}  # fmt: skip
