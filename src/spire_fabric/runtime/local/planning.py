"""`plan` of a local deployment: what `up` would change, read from the recorded state, the
files on disk, the supervisor's process plan and the live servers (like `terraform plan`).

Each part asks the same function that `up` uses to decide (configs rendered by
:mod:`.processes`, entries planned by `plan_entries`, federation by :mod:`.bootstrap`), so
the plan and what `up` does cannot drift apart.
"""

from __future__ import annotations

import copy

from spire_fabric.runtime.binaries import SPIRE_VERSION
from spire_fabric.runtime.core.versions import checked_versions
from spire_fabric.runtime.deployment import Change, DeploymentPlan
from spire_fabric.runtime.local._config_keys import changed_keys
from spire_fabric.runtime.local.bootstrap import (
    agents_needing_tokens,
    ca_changes,
    desired_entries,
    entry_changes,
    federation_changes,
)
from spire_fabric.runtime.local.context import LocalContext, server_component
from spire_fabric.runtime.local.processes import config_files, desired_components
from spire_fabric.runtime.local.supervisor import Component
from spire_fabric.runtime.local.waits import http_ok
from spire_fabric.topology import published_ports

__all__ = ["compute_plan"]

NEW_TOKEN = "<new join token>"


def _process_changes(ctx: LocalContext, needing_tokens: set[str]) -> list[Change]:
    # Plan as if the missing join tokens were minted: those agents restart with them.
    planned_ctx = copy.copy(ctx)
    planned_ctx.record = copy.deepcopy(ctx.record)
    for name in needing_tokens:
        planned_ctx.record.join_tokens[name] = NEW_TOKEN
    desired = {c.name: c for c in desired_components(planned_ctx)}
    # what really runs: a dead supervisor's orphans may run an older command than the plan
    current = {c.name: c for c in ctx.supervisor.planned()}
    current.update(ctx.supervisor.running_components())
    states = ctx.supervisor.states()
    changes: list[Change] = []
    if ctx.supervisor.pid is None:
        changes.append(Change("start", "process", "supervisor", "restarts what crashes"))
    for name, want in desired.items():
        have = current.get(name)
        if have is None:
            changes.append(Change("start", "process", name))
        elif have != want:
            changes.append(Change("restart", "process", name, "", _differences(have, want)))
        elif not (states.get(name) and states[name].running):
            changes.append(Change("start", "process", name, "not running"))
    for name in current.keys() - desired.keys():
        changes.append(Change("stop", "process", name, "no longer in the topology"))
    return changes


# digests in a component's environment that stand for a file it reads, by what they mean
_DIGESTS = {"SPIRE_FABRIC_CONFIG_SHA256": "config", "SPIRE_FABRIC_JOIN_TOKEN_SHA256": "join-token"}


def _differences(have: Component, want: Component) -> tuple[str, ...]:
    fields = []
    if have.argv != want.argv:
        fields.append("argv")
    fields += [what for key, what in _DIGESTS.items() if have.env.get(key) != want.env.get(key)]
    if {k: v for k, v in have.env.items() if k not in _DIGESTS} != {
        k: v for k, v in want.env.items() if k not in _DIGESTS
    }:
        fields.append("env")
    if have.cwd != want.cwd:
        fields.append("cwd")
    return tuple(fields)


def _config_changes(ctx: LocalContext) -> list[Change]:
    """A config that `up` would write, with the dotted keys that differ from the file on
    disk (``agent.server_port``, ``server.default_x509_svid_ttl``) as its fields."""
    changes = []
    for cfg in config_files(ctx):
        name = str(cfg.path.relative_to(ctx.state.path))
        try:
            written = cfg.path.read_text()
        except FileNotFoundError:
            changes.append(Change("create", "config", name))
            continue
        except OSError as err:
            changes.append(Change("update", "config", name, f"cannot read it: {err.strerror}"))
            continue
        if written != cfg.text:
            keys = changed_keys(written, cfg.text)
            changes.append(Change("update", "config", name, "" if keys else "comments", keys))
    return changes


def compute_plan(ctx: LocalContext) -> DeploymentPlan:
    changes: list[Change] = []
    notes: list[str] = []
    changes += ca_changes(ctx)
    changes += _config_changes(ctx)
    all_agents = [a.name for a in ctx.local.agents]
    needing = agents_needing_tokens(ctx, all_agents)
    for a in needing:
        changes.append(Change("create", "join-token", a.name, f"attest to {a.server}"))
    changes += _process_changes(ctx, {a.name for a in needing})
    # ours only if our supervisor runs it: another deployment's server may answer on the
    # same port (a test at another port base, a dev's `up`), and its entries are not ours
    running = ctx.supervisor.running_components()
    ready = {
        s.name
        for s in ctx.local.servers
        if server_component(s.name) in running and http_ok(s.host, s.ports.health, "/ready", 1)
    }
    fresh = not ctx.state.exists()
    if ready:
        changes += federation_changes(ctx, ready)
    for fed in ctx.local.federations:
        if fed.server not in ready:
            if fresh:
                changes.append(
                    Change("create", "federation", f"{fed.server} -> {fed.trust_domain}")
                )
            else:
                notes.append(f"{fed.server} is not running: federation is checked after it starts")
    for s in ctx.local.servers:
        if s.name in ready:
            changes += entry_changes(ctx, s.name)
        elif fresh:
            changes += [
                Change("create", "entry", str(e.spiffe_id), f"on {s.name}, parent {e.parent_id}")
                for e in desired_entries(ctx, s.name)
            ]
        else:
            notes.append(f"{s.name} is not running: its entries are compared after it starts")
    published = published_ports(ctx.local, "local")
    versions = planned_versions(ctx)
    return DeploymentPlan(ctx.local.name, "local", tuple(changes), tuple(notes),
                          published=published, versions=tuple(versions.items()))  # fmt: skip


def planned_versions(ctx: LocalContext) -> dict[str, str]:
    """Every local server and agent runs the one SPIRE release of ``ctx.binaries`` (the
    pinned one unless the caller chose binaries), checked against the last `up`."""
    version = ctx.binaries_.version if ctx.binaries_ is not None else SPIRE_VERSION
    return checked_versions(ctx.local, ctx.state.path, version, version)
