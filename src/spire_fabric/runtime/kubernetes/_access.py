"""How the installer reaches a Kubernetes deployment's parts: cluster connections, each
server's API (admin SVID + port-forward), port-forwards to pods. Made once each and kept,
since `status` and the dashboard read from many threads."""

from __future__ import annotations

import threading
from pathlib import Path

from spire_fabric.runtime.kubernetes._adapt import adapt
from spire_fabric.runtime.kubernetes._clusters import ClusterApi, connect, resolve_contexts
from spire_fabric.runtime.kubernetes._pods import PortForward, running_pod
from spire_fabric.runtime.kubernetes._spire import ServerAccess
from spire_fabric.runtime.kubernetes._state import KubernetesSettings
from spire_fabric.topology import Topology

__all__ = ["ClusterAccess"]


class ClusterAccess:
    """One topology's clusters, as the recorded settings reach them."""

    def __init__(self, topology: Topology, settings: KubernetesSettings, state_dir: Path) -> None:
        self.written_topology = topology
        self.settings = settings
        self.state_dir = state_dir
        self._clusters: dict[str, ClusterApi] | None = None
        self._topology: Topology | None = None
        self._servers: dict[str, ServerAccess] = {}
        self._forwards: dict[str, PortForward] = {}
        self._retired: list[PortForward] = []  # replaced; their connections in flight end
        self._lock = threading.RLock()

    @property
    def name(self) -> str:
        return self.written_topology.name

    @property
    def clusters(self) -> dict[str, ClusterApi]:
        with self._lock:
            if self._clusters is None:
                contexts = resolve_contexts(
                    self.written_topology, self.settings.kubeconfig, self.settings.contexts
                )
                self._clusters = connect(self.written_topology, self.settings.kubeconfig, contexts)
            return self._clusters

    @property
    def topology(self) -> Topology:
        """The topology as these clusters run it (node addresses, images, socket)."""
        if self._topology is None:
            self._topology = adapt(self.written_topology, self.clusters, self.settings)
        return self._topology

    def server_access(self, name: str) -> ServerAccess:
        with self._lock:
            if name not in self._servers:
                s = self.topology.server(name)
                assert s.kubernetes is not None
                self._servers[name] = ServerAccess(self.clusters[s.kubernetes.cluster], s)
            return self._servers[name]

    def replica_access(self, name: str, pod: str) -> ServerAccess:
        """Admin access to one replica's own pod (its port-forward, its API)."""
        with self._lock:
            key = f"{name}/{pod}"
            if key not in self._servers:
                s = self.topology.server(name)
                assert s.kubernetes is not None
                conn = self.clusters[s.kubernetes.cluster]
                self._servers[key] = ServerAccess(conn, s, fixed_pod=pod)
            return self._servers[key]

    def forward(
        self, key: str, cluster: str, namespace: str, labels: dict[str, str], port: int
    ) -> PortForward:
        """A port-forward to a running pod of ``labels``, replaced when the pod is (the old
        one's connections in flight are left to end with the old pod)."""
        conn = self.clusters[cluster]
        pod = running_pod(conn, namespace, labels)
        with self._lock:
            pf = self._forwards.get(key)
            if pf is None or pf.pod != pod:
                if pf is not None:
                    pf.retire()
                    self._retired = [r for r in self._retired if r.carrying] + [pf]
                pf = PortForward(conn, namespace, pod, port)
                self._forwards[key] = pf
            return pf

    def workload_cluster(self, name: str) -> str:
        """The cluster of the workload's agent (where its pods run)."""
        agent = self.topology.agent(self.topology.workload(name).agent)
        assert agent.kubernetes is not None
        return agent.kubernetes.cluster

    def close(self) -> None:
        with self._lock:
            for access in self._servers.values():
                access.close()
            for pf in [*self._forwards.values(), *self._retired]:
                pf.close()
            self._servers.clear()
            self._forwards.clear()
            self._retired.clear()
            for c in (self._clusters or {}).values():
                c.close()
            self._clusters = None
