"""The process plan: which SPIRE servers, agents and workloads run, with which configs.

Pure where it can be: configs are rendered and compared here, written only by
:func:`write_configs`, so `plan` and `up` read the same decisions. A component's
environment carries the SHA-256 of its config, so a changed config changes the plan and
the supervisor restarts exactly that process.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from spire_fabric.render import render_agent_config, render_server_config
from spire_fabric.runtime.local.context import LocalContext, agent_component, server_component
from spire_fabric.runtime.local.supervisor import Component
from spire_fabric.runtime.local.workloads import workload_processes

__all__ = ["ConfigFile", "agent_components", "config_files", "desired_components",
           "server_components", "write_configs", "write_if_changed"]  # fmt: skip


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


def write_configs(ctx: LocalContext, servers: list[str], agents: list[str]) -> None:
    for name in servers:
        cfg = server_config(ctx, name)
        write_if_changed(cfg.path, cfg.text)
        Path(ctx.paths.server_data_dir(name)).mkdir(parents=True, exist_ok=True)
        Path(ctx.paths.server_socket(name)).parent.mkdir(parents=True, exist_ok=True)
    for name in agents:
        cfg = agent_config(ctx, name)
        write_if_changed(cfg.path, cfg.text)


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
        # the SVID its disk key manager kept. It stays in argv so the plan (and thus the
        # process) does not change between `up` runs.
        argv = (str(ctx.binaries.agent), "run", "-config", str(cfg.path), "-joinToken", token)
        comps.append(
            Component(
                name=agent_component(name),
                argv=argv,
                log_path=str(ctx.log_path(agent_component(name))),
                env={"SPIRE_FABRIC_CONFIG_SHA256": cfg.sha256},
            )
        )
    return comps


def desired_components(
    ctx: LocalContext, servers: list[str] | None = None, agents: list[str] | None = None
) -> list[Component]:
    """The whole plan (or the part of it that may start now: ``servers``/``agents`` limit
    it while `up` brings tiers of a nested topology up one after the other). A workload is
    planned only once its agent is: without the socket it would only restart."""
    servers = [s.name for s in ctx.local.servers] if servers is None else servers
    agents = [a.name for a in ctx.local.agents] if agents is None else agents
    agent_comps = agent_components(ctx, agents)
    running_agents = {c.name.split(":", 1)[1] for c in agent_comps}
    workloads = [p.component for p in workload_processes(ctx) if p.workload.agent in running_agents]
    return server_components(ctx, servers) + agent_comps + workloads
