"""The topology's sidecars as supervised processes beside their apps.

A sidecar is a component of its own (`sidecar:<workload>.<sidecar>`), restarted by the
supervisor like any other, with the workload's agent socket: on this target every process
of the deployment runs as the user, so the agent's unix attestor gives the sidecar the
workload's entry (`localize` makes sure a ghostunnel sidecar's agent serves only it).
The argv comes from `spire_fabric.render.sidecar_command`, the same as the Kubernetes
containers', with this machine's addresses: everything on loopback, ports moved by
`--port-base` (`localize` did that), ghostunnel from the Go build cache, the helper run
by this interpreter.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from spire_fabric.render import SVID_SUBDIR, SidecarPlace, sidecar_command
from spire_fabric.runtime.ghostunnel import ghostunnel_program
from spire_fabric.runtime.local.context import LocalContext
from spire_fabric.runtime.local.localize import LOOPBACK
from spire_fabric.runtime.local.supervisor import Component
from spire_fabric.topology import Sidecar, Topology, Workload

__all__ = ["SidecarProcess", "sidecar_component", "sidecar_processes", "svid_dir"]


@dataclass(frozen=True)
class SidecarProcess:
    workload: Workload
    sidecar: Sidecar
    component: Component

    @property
    def port(self) -> int | None:
        """Where it listens on LOOPBACK for traffic (server: the workload's port)."""
        if self.sidecar.mode == "server":
            return self.workload.run.port if self.workload.run else None
        return self.sidecar.listen_port


def sidecar_component(workload: str, sidecar: str) -> str:
    return f"sidecar:{workload}.{sidecar}"


def svid_dir(state_dir: Path, workload: str) -> Path:
    """Where a files-mode sidecar writes the workload's SVID files ({svid})."""
    return state_dir / "workloads" / workload / SVID_SUBDIR


def _targets(local: Topology) -> dict[str, str]:
    """Where each workload that runs with a port listens (the sidecars' upstreams)."""
    return {t.name: f"{LOOPBACK}:{t.run.port}" for t in local.workloads
            if t.run is not None and t.run.port is not None}  # fmt: skip


def _place(ctx: LocalContext, w: Workload, targets: dict[str, str]) -> SidecarPlace:
    return SidecarPlace(
        socket_address=ctx.agent_endpoint(w.agent), public_host=LOOPBACK, status_host=LOOPBACK,
        ghostunnel=str(ghostunnel_program().bin_dir / "ghostunnel"),
        python=(sys.executable,), svid_dir=str(svid_dir(ctx.state.path, w.name)),
        public_port=w.run.port if w.run else None, target_addresses=targets,
    )  # fmt: skip


def sidecar_processes(ctx: LocalContext) -> list[SidecarProcess]:
    """Every sidecar of a workload that runs here, in the topology's order."""
    out = []
    # once, not once per running workload: each pass reads every workload (50k in a scale
    # plan), and only a workload with sidecars needs a place at all
    targets: dict[str, str] | None = None
    for w in ctx.local.workloads:
        if w.run is None or not w.sidecars:
            continue
        if targets is None:
            targets = _targets(ctx.local)
        place = _place(ctx, w, targets)
        for s in w.sidecars:
            name = sidecar_component(w.name, s.name)
            out.append(SidecarProcess(w, s, Component(
                name=name,
                argv=tuple(sidecar_command(ctx.local, w, s, place)),
                log_path=str(ctx.log_path(name)),
                env={"SPIFFE_ENDPOINT_SOCKET": ctx.agent_endpoint(w.agent)},
                # files mode works in the SVID directory: the supervisor makes it (0700)
                # before each start, and the helper wants it to exist
                cwd=place.svid_dir if s.mode == "files" else str(
                    ctx.state.path / "workloads" / w.name),
            )))  # fmt: skip
    return out
