"""Where rendered configs say files live, per target.

The renderers never invent a path: they ask a :class:`RenderPaths`. The local installer
passes ``RenderPaths.local(state_dir)`` (everything under one directory it owns); the
Kubernetes renderer uses ``RenderPaths.kubernetes()`` and mounts volumes at these paths.
"""

from __future__ import annotations

from dataclasses import dataclass

from spire_fabric.topology import Agent, Target

K8S_ROOT = "/run/spire"


@dataclass(frozen=True)
class RenderPaths:
    """File layout for one target. ``insecure_bootstrap`` makes agents skip the trust
    bundle (only for throwaway demos; SPIRE then trusts the first server it reaches)."""

    target: Target
    root: str
    insecure_bootstrap: bool = False

    @classmethod
    def local(cls, state_dir: str, *, insecure_bootstrap: bool = False) -> RenderPaths:
        """Paths under a local state directory."""
        return cls("local", state_dir.rstrip("/") or "/", insecure_bootstrap)

    @classmethod
    def kubernetes(cls) -> RenderPaths:
        """Paths inside the SPIRE containers on Kubernetes."""
        return cls("kubernetes", K8S_ROOT)

    @property
    def is_local(self) -> bool:
        """Whether these are the local target's paths."""
        return self.target == "local"

    # --- servers: locally one directory per server; on Kubernetes one pod per server --

    def _server(self, name: str, leaf: str) -> str:
        return f"{self.root}/servers/{name}/{leaf}" if self.is_local else f"{K8S_ROOT}/{leaf}"

    def server_config(self, name: str) -> str:
        """Where server ``name``'s server.conf is."""
        if self.is_local:
            return self._server(name, "server.conf")
        return f"{K8S_ROOT}/config/server.conf"

    def server_data_dir(self, name: str) -> str:
        """Server ``name``'s data directory."""
        return self._server(name, "data")

    def server_socket(self, name: str) -> str:
        """Server ``name``'s API socket."""
        if self.is_local:
            return self._server(name, "private/api.sock")
        return "/tmp/spire-server/private/api.sock"

    def server_keys(self, name: str) -> str:
        """Where server ``name`` keeps its keys."""
        return f"{self.server_data_dir(name)}/keys.json"

    def sqlite_file(self, name: str) -> str:
        """Server ``name``'s SQLite datastore file."""
        return f"{self.server_data_dir(name)}/datastore.sqlite3"

    def upstream_ca_cert(self, server: str, ca: str) -> str:
        """Chain of the trust domain's intermediate (leaf first) the server signs with."""
        return self._ca(server, ca, "crt", "tls.crt")

    def upstream_ca_key(self, server: str, ca: str) -> str:
        """The key of intermediate ``ca`` as ``server``'s disk UpstreamAuthority reads it."""
        return self._ca(server, ca, "key", "tls.key")

    def upstream_ca_bundle(self, server: str, root: str) -> str:
        """The Enterprise Root certificate(s) that chain the intermediate up."""
        return self._ca(server, root, "crt", "bundle.crt")

    def _ca(self, server: str, name: str, ext: str, k8s_leaf: str) -> str:
        if self.is_local:
            return f"{self.root}/ca/{name}.{ext}"
        return f"{K8S_ROOT}/upstream-ca/{k8s_leaf}"

    def mysql_ca(self, server: str) -> str:
        """The CA that issued the certificate of the MySQL the Kubernetes target deploys for
        ``server`` (locally the installer deploys no MySQL, so there is no such file)."""
        if self.is_local:
            raise ValueError("the local target deploys no MySQL and has no datastore CA")
        return f"{K8S_ROOT}/mysql-ca/ca.crt"

    def bundle_endpoint_cert(self, server: str) -> str:
        """The web certificate of ``server``'s https_web bundle endpoint."""
        return self._server(server, "bundle-endpoint/tls.crt")

    def bundle_endpoint_key(self, server: str) -> str:
        """The key of ``server``'s https_web bundle endpoint."""
        return self._server(server, "bundle-endpoint/tls.key")

    def nested_upstream_socket(self, server: str, agent: Agent) -> str:
        """The Workload API socket a nested server reads its upstream SVID from: the
        upstream-side agent's socket (locally) or a socket volume shared with it (k8s)."""
        if self.is_local:
            return self.agent_socket(agent)
        return f"{K8S_ROOT}/upstream-agent/api.sock"

    # --- agents ---------------------------------------------------------------------

    def _agent(self, name: str, leaf: str) -> str:
        return f"{self.root}/agents/{name}/{leaf}" if self.is_local else f"{K8S_ROOT}/{leaf}"

    def agent_config(self, name: str) -> str:
        """Where agent ``name``'s agent.conf is."""
        if self.is_local:
            return self._agent(name, "agent.conf")
        return f"{K8S_ROOT}/config/agent.conf"

    def agent_data_dir(self, name: str) -> str:
        """Agent ``name``'s data directory."""
        return self._agent(name, "data")

    def agent_socket(self, agent: Agent) -> str:
        """The agent's Workload API socket: the one decision every part reads (the agent's
        config, the installer, the verifier, the workloads' environment, the pod mounts).
        ``Agent.socket_path`` wins on every target when the topology sets it."""
        if agent.socket_path:
            return agent.socket_path
        if self.is_local:
            return self._agent(agent.name, "public/api.sock")
        return f"{K8S_ROOT}/sockets/api.sock"

    def agent_admin_socket(self, agent: Agent) -> str:
        """``agent``'s admin API socket."""
        # SPIRE refuses an admin socket in the Workload API socket's directory.
        if agent.admin_socket_path:
            return agent.admin_socket_path
        return self._agent(agent.name, "admin/admin.sock")

    def agent_trust_bundle(self, name: str) -> str:
        """The bootstrap trust bundle agent ``name`` starts from."""
        if self.is_local:
            return self._agent(name, "bootstrap/bundle.crt")
        return f"{K8S_ROOT}/bundle/bundle.crt"

    # --- monitoring: locally one directory for Prometheus and Alertmanager -------------

    def monitoring_dir(self) -> str:
        """Where Prometheus' and Alertmanager's configs and data live."""
        return f"{self.root}/monitoring" if self.is_local else "/etc/prometheus"

    def prometheus_config(self) -> str:
        return f"{self.monitoring_dir()}/prometheus.yml"

    def prometheus_rules(self) -> str:
        """The alert rules file the Prometheus config names."""
        return f"{self.monitoring_dir()}/rules.yml"

    def alertmanager_config(self) -> str:
        return f"{self.monitoring_dir()}/alertmanager.yml"
