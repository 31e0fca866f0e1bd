"""The process plan: which SPIRE servers, agents and workloads run, with which configs.

Pure where it can be: configs are rendered and compared here, written only by
:func:`write_configs`, so `plan` and `up` read the same decisions. A component's
environment carries the SHA-256 of its config, so a changed config changes the plan and
the supervisor restarts exactly that process. Every file a process reads must be written
before the plan that restarts it is published (:func:`write_configs` first, then
``set_components``): a process restarted early reads the old file.

An agent's join token is passed through a 0600 file (``-joinTokenFile``, SPIRE >= 1.13),
never on its command line, where every local user can read it in ``/proc/<pid>/cmdline``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from spire_fabric.render import render_agent_config, render_server_config
from spire_fabric.runtime.local.context import LocalContext, agent_component, server_component
from spire_fabric.runtime.local.monitoring import (
    monitoring_components,
    monitoring_config_files,
    monitoring_data_dirs,
)
from spire_fabric.runtime.local.sidecars import sidecar_processes
from spire_fabric.runtime.local.supervisor import Component
from spire_fabric.runtime.local.workloads import workload_processes

__all__ = ["ConfigFile", "agent_components", "config_files", "desired_components",
           "join_token_file", "publish", "server_components", "write_configs",
           "write_if_changed", "write_private"]  # fmt: skip


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def differs(self) -> bool:
        try:
            return self.path.read_text() != self.text
        except OSError:
            return True


def server_config(ctx: LocalContext, name: str) -> ConfigFile:
    return ConfigFile(
        Path(ctx.paths.server_config(name)), render_server_config(ctx.local, name, ctx.paths)
    )


def agent_config(ctx: LocalContext, name: str) -> ConfigFile:
    return ConfigFile(
        Path(ctx.paths.agent_config(name)), render_agent_config(ctx.local, name, ctx.paths)
    )


def config_files(ctx: LocalContext) -> list[ConfigFile]:
    return [server_config(ctx, s.name) for s in ctx.local.servers] + [
        agent_config(ctx, a.name) for a in ctx.local.agents
    ]


def write_if_changed(path: Path, text: str) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def write_private(path: Path, text: str) -> bool:
    """Like :func:`write_if_changed` for a secret: the file is 0600 from its first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_text() == text and (path.stat().st_mode & 0o777) == 0o600:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)
    return True


def join_token_file(ctx: LocalContext, name: str) -> Path:
    """Where agent ``name``'s join token is kept for ``-joinTokenFile`` (beside its config,
    not in its data directory, which a new attestation wipes)."""
    return Path(ctx.paths.agent_config(name)).with_name("join-token")


def write_configs(ctx: LocalContext, servers: list[str], agents: list[str]) -> None:
    """Every file the given servers and agents read at start: their configs, data and
    socket directories, and each agent's join token file."""
    for name in servers:
        cfg = server_config(ctx, name)
        write_if_changed(cfg.path, cfg.text)
        Path(ctx.paths.server_data_dir(name)).mkdir(parents=True, exist_ok=True)
        Path(ctx.paths.server_socket(name)).parent.mkdir(parents=True, exist_ok=True)
    for name in agents:
        cfg = agent_config(ctx, name)
        write_if_changed(cfg.path, cfg.text)
        token = ctx.record.join_tokens.get(name)
        if token is not None:
            write_private(join_token_file(ctx, name), token + "\n")


def write_monitoring_files(ctx: LocalContext) -> None:
    """Prometheus' and Alertmanager's configs and data directories (nothing without
    ``monitoring:``)."""
    for files in monitoring_config_files(ctx).values():
        for path, text in files:
            write_if_changed(path, text)
    for directory in monitoring_data_dirs(ctx):
        directory.mkdir(parents=True, exist_ok=True)


def server_components(ctx: LocalContext, names: list[str]) -> list[Component]:
    comps = []
    for name in names:
        cfg = server_config(ctx, name)
        comps.append(
            Component(
                name=server_component(name),
                argv=(str(ctx.binaries.server), "run", "-config", str(cfg.path)),
                log_path=str(ctx.log_path(server_component(name))),
                env={"SPIRE_FABRIC_CONFIG_SHA256": cfg.sha256},
            )
        )
    return comps


def agent_components(ctx: LocalContext, names: list[str]) -> list[Component]:
    """Agents that hold a join token; one without is not attested yet and not planned."""
    comps = []
    for name in names:
        token = ctx.record.join_tokens.get(name)
        if token is None:
            continue
        cfg = agent_config(ctx, name)
        # The token is only used for the first attestation; afterwards the agent reuses
        # the SVID its disk key manager kept, but SPIRE still reads the file at every
        # start, so it stays. Its digest in the environment restarts the agent when a new
        # token is minted (a new attestation) and keeps the plan unchanged otherwise.
        argv = (
            str(ctx.binaries.agent), "run", "-config", str(cfg.path),
            "-joinTokenFile", str(join_token_file(ctx, name)),
        )  # fmt: skip
        comps.append(
            Component(
                name=agent_component(name),
                argv=argv,
                log_path=str(ctx.log_path(agent_component(name))),
                env={
                    "SPIRE_FABRIC_CONFIG_SHA256": cfg.sha256,
                    "SPIRE_FABRIC_JOIN_TOKEN_SHA256": hashlib.sha256(token.encode()).hexdigest(),
                },
            )
        )
    return comps


def desired_components(
    ctx: LocalContext,
    servers: list[str] | None = None,
    agents: list[str] | None = None,
    *,
    monitoring: bool | None = None,
) -> list[Component]:
    """The whole plan (or the part of it that may start now: ``servers``/``agents`` limit
    it while `up` brings tiers of a nested topology up one after the other). A workload is
    planned only once its agent is: without the socket it would only restart. Prometheus
    and Alertmanager come last, once everything they watch runs (``monitoring``; by
    default with the whole plan only)."""
    whole = servers is None and agents is None
    servers = [s.name for s in ctx.local.servers] if servers is None else servers
    agents = [a.name for a in ctx.local.agents] if agents is None else agents
    agent_comps = agent_components(ctx, agents)
    running_agents = {c.name.split(":", 1)[1] for c in agent_comps}
    workloads = [p.component for p in workload_processes(ctx) if p.workload.agent in running_agents]
    sidecars = [p.component for p in sidecar_processes(ctx) if p.workload.agent in running_agents]
    watchers = monitoring_components(ctx) if (whole if monitoring is None else monitoring) else []
    return server_components(ctx, servers) + agent_comps + sidecars + workloads + watchers


def publish(
    ctx: LocalContext, servers: list[str], agents: list[str], *, monitoring: bool = False
) -> None:
    """Publish the process plan for one step of `up`; the supervisor applies it at once.

    The servers and agents this step has reached (and those agents' workloads) get their
    new components, after every file they read is written: a process restarted before its
    new config is written starts with the old one (an agent with the old server port
    crashed ~40 s later). Whatever else already runs keeps the component it runs with until
    its own step, so a tier-by-tier `up` of a running deployment restarts nothing needlessly
    and an agent whose config changed restarts after its server is ready, not with it (an
    agent started before its server gave up on it and retried 5 s later).
    """
    write_configs(ctx, servers, agents)
    if monitoring:
        write_monitoring_files(ctx)
    running = {c.name: c for c in ctx.supervisor.planned()}
    reached = {c.name: c for c in desired_components(ctx, servers, agents, monitoring=monitoring)}
    plan = []
    for component in desired_components(ctx):  # the topology's order; what left it stops
        if component.name in reached:
            plan.append(reached[component.name])
        elif component.name in running:
            plan.append(running[component.name])
    ctx.supervisor.set_components(plan)
