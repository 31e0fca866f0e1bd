"""The Kubernetes target in the registry (:mod:`spire_fabric.runtime.targets`)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from spire_fabric.render.kubernetes import InstallerSecrets
from spire_fabric.runtime.deployment import Change
from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.runtime.kubernetes._state import (
    SETTINGS_FILE,
    KubernetesSettings,
    default_state_dir,
    load,
    load_applied,
)
from spire_fabric.runtime.targets import DeploymentOptions, TargetError, setting_change
from spire_fabric.topology import Target, Topology

if TYPE_CHECKING:
    from spire_fabric.runtime.kubernetes.deployment import KubernetesDeployment

# What needs the official kubernetes client (deployment, clusters, installer secrets) is
# imported inside the methods that use it: the registry builds this provider to ask
# `holds` on every command, local ones included (see the package's docstring).

__all__ = ["KubernetesProvider"]


class KubernetesProvider:
    """A topology's clusters, reached with the recorded kubeconfig and contexts."""

    name: Target = "kubernetes"
    options = frozenset({"kubeconfig", "contexts", "images", "workload_socket", "timeout"})
    # Pods' entries are made by the controller manager after the pod starts and reach the
    # agent on its next sync (5 s): a first verify can be early.
    converge_s = 90.0
    verify_pause_s = 3.0

    def state_dir(self, topology_name: str) -> Path:
        return default_state_dir(topology_name)

    def holds(self, state_dir: Path) -> bool:
        return (state_dir / SETTINGS_FILE).exists()

    def recorded_topology(self, state_dir: Path) -> Topology:
        return load(state_dir)[0]

    def settings(self, state_dir: Path, options: DeploymentOptions) -> KubernetesSettings:
        """The recorded settings with the given options on top (per role for images and
        per cluster for contexts: a flag changes what it names, nothing else)."""
        rec = load(state_dir)[1] if self.holds(state_dir) else KubernetesSettings()
        return KubernetesSettings(
            kubeconfig=options.kubeconfig or rec.kubeconfig,
            contexts={**rec.contexts, **options.contexts},
            images={**rec.images, **options.images},
            workload_socket=options.workload_socket or rec.workload_socket,
            timeout=options.timeout or rec.timeout,
        )

    def create(
        self, topology: Topology, state_dir: Path, options: DeploymentOptions
    ) -> KubernetesDeployment:
        # before any kubeconfig is read: a topology without a Kubernetes placement (the
        # local-only scale preset, a YAML file written for local use) is refused by name
        unplaced = [s.name for s in topology.servers if s.kubernetes is None]
        if unplaced and len(unplaced) == len(topology.servers):
            raise TargetError(
                f"topology {topology.name!r} cannot run on Kubernetes: server(s) "
                f"{', '.join(unplaced)} have no kubernetes placement (servers[...].kubernetes)"
                "; use --target local"
            )
        from spire_fabric.runtime.kubernetes.deployment import KubernetesDeployment

        return KubernetesDeployment.create(topology, self.settings(state_dir, options), state_dir)

    def open(self, state_dir: Path) -> KubernetesDeployment:
        from spire_fabric.runtime.kubernetes.deployment import KubernetesDeployment

        return KubernetesDeployment.open(state_dir)

    def setting_changes(self, state_dir: Path, options: DeploymentOptions) -> list[Change]:
        if not self.holds(state_dir):
            return []
        rec = load(state_dir)[1]
        new = self.settings(state_dir, options)
        out = []
        for f in dataclasses.fields(KubernetesSettings):
            old_v, new_v = getattr(rec, f.name), getattr(new, f.name)
            if f.name == "contexts" and not options.contexts:
                continue  # resolved from the kubeconfig at create: compare only what was given
            if old_v != new_v:
                out.append(setting_change(f.name.replace("_", "-"), old_v, new_v))
        return out

    def applied(self, state_dir: Path) -> tuple[Topology, InstallerSecrets | None]:
        from spire_fabric.runtime.kubernetes._installer_secrets import SecretValues

        applied = load_applied(state_dir)
        if applied is None:
            raise TargetError(f"{state_dir}: `up` has not applied this deployment yet")
        return applied, SecretValues(state_dir).values(applied, make=False)

    def failure_message(self, err: BaseException) -> str | None:
        """Ours, or the API server gone or refusing in the middle of a command."""
        if isinstance(err, KubernetesTargetError):
            return str(err)
        if "kubernetes" not in sys.modules:  # no client was used: not one of its errors
            return None
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        from spire_fabric.runtime.kubernetes._clusters import api_error_message

        if isinstance(err, HTTPError):
            return f"lost the Kubernetes API server: {str(err).splitlines()[0][:300]}"
        if isinstance(err, ApiException):
            return f"the Kubernetes API refused ({err.status}): {api_error_message(err)}"
        return None
