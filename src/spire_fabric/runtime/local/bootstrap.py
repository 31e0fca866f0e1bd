"""The local target's side of the installer core: where its CA files, join tokens and
agent data live. What is decided and done through SPIRE's API is
:mod:`spire_fabric.runtime.core`'s, the same on every target; these functions give it the
local context.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from spire_fabric.entries import plan_entries
from spire_fabric.runtime.ca_hierarchy import CaFiles, CertificateAuthority
from spire_fabric.runtime.core import (
    CaStore,
    FederationWork,
    UpError,
    apply_registrations,
    entry_owner,
    mint_join_token,
    registration_entries,
)
from spire_fabric.runtime.core import entry_changes as core_entry_changes
from spire_fabric.runtime.deployment import Change
from spire_fabric.runtime.local.context import LocalContext
from spire_fabric.runtime.local.processes import write_if_changed
from spire_fabric.server import Bundle, Entry
from spire_fabric.topology import Agent

__all__ = [
    "UpError",
    "agent_attested",
    "agents_needing_tokens",
    "apply_workload_entries",
    "bootstrap_federation",
    "ca_changes",
    "desired_entries",
    "ensure_ca",
    "entry_changes",
    "entry_owner",
    "federation_changes",
    "mint_join_tokens",
    "root_ca",
]


def _ca(ctx: LocalContext) -> CaStore:
    return CaStore(ctx.state.ca_dir)


def ca_changes(ctx: LocalContext) -> list[Change]:
    return _ca(ctx).changes(ctx.local)


def ensure_ca(ctx: LocalContext) -> dict[str, CaFiles]:
    """Create the CA hierarchy once; later calls load what is on disk."""
    return _ca(ctx).ensure(ctx.local)


def root_ca(ctx: LocalContext) -> CertificateAuthority | None:
    return _ca(ctx).root(ctx.local)


def _federation(ctx: LocalContext) -> FederationWork:
    return FederationWork(ctx.local, "local", ctx.server_client)


def federation_changes(ctx: LocalContext, running: set[str]) -> list[Change]:
    return _federation(ctx).changes(running)


def bootstrap_federation(ctx: LocalContext, running: set[str]) -> None:
    _federation(ctx).apply(running)


# ---- agents --------------------------------------------------------------------------


def agent_attested(ctx: LocalContext, agent: Agent) -> bool:
    # SPIRE 1.13 keeps the agent SVID in agent-data.json (pkg/agent/storage)
    return (Path(ctx.paths.agent_data_dir(agent.name)) / "agent-data.json").exists()


def agents_needing_tokens(ctx: LocalContext, names: list[str]) -> list[Agent]:
    agents = [ctx.local.agent(n) for n in names]
    return [a for a in agents if a.name not in ctx.record.join_tokens or not agent_attested(ctx, a)]


def _bundle_pem(bundle: Bundle) -> str:
    return "".join(
        a.certificate.public_bytes(serialization.Encoding.PEM).decode()
        for a in bundle.x509_authorities
    )


def mint_join_tokens(ctx: LocalContext, names: list[str]) -> None:
    needing = {a.name for a in agents_needing_tokens(ctx, names)}
    for name in names:
        a = ctx.local.agent(name)
        with ctx.server_client(a.server) as client:
            bundle = client.get_bundle()
            write_if_changed(Path(ctx.paths.agent_trust_bundle(a.name)), _bundle_pem(bundle))
            if a.name not in needing:
                continue
            token = mint_join_token(client, ctx.local, a, ctx.record.join_tokens.get(a.name))
        _reset_agent_data(ctx, a)
        ctx.record.join_tokens[a.name] = token
    ctx.state.save(ctx.record, ctx.topology)


def _reset_agent_data(ctx: LocalContext, agent: Agent) -> None:
    """A new join token means a new attestation: drop a stale SVID and key."""
    data = Path(ctx.paths.agent_data_dir(agent.name))
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    for path in (ctx.paths.agent_socket(agent), ctx.paths.agent_admin_socket(agent)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


# ---- entries -------------------------------------------------------------------------


def desired_entries(ctx: LocalContext, server: str) -> list[Entry]:
    return registration_entries(ctx.local, server, "local")


def entry_changes(ctx: LocalContext, server: str) -> list[Change]:
    owner = entry_owner(ctx.local)
    with ctx.server_client(server) as client:
        current = list(client.list_entries(id_prefix=f"{owner}.", timeout=10))
    plan = plan_entries(current, desired_entries(ctx, server), owner=owner)
    return core_entry_changes(server, plan)


def apply_workload_entries(ctx: LocalContext, servers: list[str]) -> None:
    apply_registrations(
        ctx.local, servers, ctx.server_client, lambda name: desired_entries(ctx, name)
    )
