"""The topology's workloads as supervised processes, from their run descriptions.

Nothing here knows a workload by name: a workload with ``run`` becomes a process with its
agent's ``SPIFFE_ENDPOINT_SOCKET``, its placeholders resolved to this machine's addresses
(loopback, ports moved by ``--port-base``) and a working directory of its own under the
state directory, where it may keep files across restarts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spire_fabric.runtime.local.context import LocalContext, workload_component
from spire_fabric.runtime.local.localize import LOOPBACK
from spire_fabric.runtime.local.supervisor import Component
from spire_fabric.topology import Placeholder, Topology, Workload, expand_placeholders

__all__ = ["WorkloadProcess", "local_workload_port", "workload_processes"]


@dataclass(frozen=True)
class WorkloadProcess:
    workload: Workload
    component: Component
    port: int | None  # where it listens on LOOPBACK, if it serves


def local_workload_port(workload: Workload) -> int | None:
    """Where a workload of the localized topology listens (`localize` shifted it)."""
    return None if workload.run is None else workload.run.port


def workload_files_dir(state_dir: Path, workload: str) -> Path:
    """Where the local target keeps a workload's managed files ({files})."""
    return state_dir / "workloads" / workload / "files"


def placeholder_value(
    topology: Topology, workload: Workload, files: Path
) -> Callable[[Placeholder], str]:
    def value(p: Placeholder) -> str:
        target = topology.workload(p.workload) if p.workload else workload
        port = local_workload_port(target)
        if p.key == "files":
            return str(files)
        if p.key == "spiffe_id":
            return target.spiffe_id
        if p.key == "port":
            return str(port)
        if p.key == "listen":
            return f"{LOOPBACK}:{port}"
        if p.key == "metrics_listen":
            return f"{LOOPBACK}:{target.run.metrics_port if target.run else 0}"
        return f"https://{LOOPBACK}:{port}"  # url

    return value


def workload_processes(ctx: LocalContext) -> list[WorkloadProcess]:
    procs = []
    for w in ctx.local.workloads:
        run = w.run
        if run is None:
            continue
        value = placeholder_value(ctx.local, w, workload_files_dir(ctx.state.path, w.name))
        base = (sys.executable, "-m", run.module) if run.module else run.command
        argv = tuple(expand_placeholders(t, value) for t in (*base, *run.args))
        # SPIFFE_ID as on Kubernetes: workloads sharing an agent and a uid get each other's
        # SVIDs too, and this is how a workload picks its own
        env = {"SPIFFE_ENDPOINT_SOCKET": ctx.agent_endpoint(w.agent), "SPIFFE_ID": w.spiffe_id}
        for item in run.env:
            name, _, raw = item.partition("=")
            env[name] = expand_placeholders(raw, value)
        name = workload_component(w.name)
        procs.append(
            WorkloadProcess(
                workload=w,
                component=Component(
                    name=name,
                    argv=argv,
                    log_path=str(ctx.log_path(name)),
                    env=env,
                    cwd=str(ctx.state.path / "workloads" / w.name),
                ),
                port=local_workload_port(w),
            )
        )
    return procs
