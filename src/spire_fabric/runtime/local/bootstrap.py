"""Making SPIRE ready for its agents and workloads, through SPIRE's own API.

The order follows DESIGN.md: CA hierarchy; federation bundles exchanged *before* any
federating entry exists; join tokens minted for agent alias IDs; entries reconciled with
`apply_entries`. Each function is idempotent and each has a planning twin that says what
it would change without changing it, so `plan` and `up` cannot disagree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from spire_fabric.entries import apply_entries, plan_entries
from spire_fabric.errors import SpireFabricError
from spire_fabric.identity import SpiffeId
from spire_fabric.identity import agent_alias_id as identity_agent_alias_id
from spire_fabric.runtime.ca_hierarchy import (
    CaFiles,
    CertificateAuthority,
    create_root_ca,
    issue_intermediate_ca,
    load_ca,
    write_ca,
)
from spire_fabric.runtime.deployment import Change
from spire_fabric.runtime.local.context import LocalContext
from spire_fabric.runtime.local.processes import write_if_changed
from spire_fabric.server import (
    Bundle,
    Entry,
    FederationRelationship,
    HttpsSpiffeProfile,
    HttpsWebProfile,
    NotFoundError,
    Selector,
    SpireApiError,
)
from spire_fabric.topology import (
    Agent,
    Federation,
    Server,
    Topology,
    endpoint_spiffe_id,
    workload_selectors,
)

__all__ = [
    "UpError",
    "agent_alias_id",
    "agent_attested",
    "apply_workload_entries",
    "bootstrap_federation",
    "ca_changes",
    "desired_entries",
    "ensure_ca",
    "entry_owner",
    "federation_changes",
    "mint_join_tokens",
    "root_ca",
]

JOIN_TOKEN_TTL_S = 600


class UpError(SpireFabricError, RuntimeError):
    """A step of `up` failed; the message names the step, the component and its log."""


def agent_alias_id(topology: Topology, agent: Agent) -> SpiffeId:
    """A stable SPIFFE ID for an agent, so entries survive re-attestation with a new token."""
    return identity_agent_alias_id(topology.server(agent.server).trust_domain, agent.name)


def entry_owner(topology: Topology) -> str:
    """The owner name under which `apply_entries` manages this topology's entries."""
    return f"spire-fabric-{topology.name}"


# ---- CA hierarchy --------------------------------------------------------------------


def _ca_files(ctx: LocalContext, name: str) -> CaFiles:
    ca_dir = ctx.state.ca_dir
    return CaFiles(
        cert_path=ca_dir / f"{name}.crt",
        key_path=ca_dir / f"{name}.key",
        bundle_path=ca_dir / f"{name}-bundle.crt",
    )


def ca_changes(ctx: LocalContext) -> list[Change]:
    ca = ctx.local.ca
    if ca is None:
        return []
    names = [(ca.root.name, ca.root.common_name)] + [
        (i.name, i.common_name) for i in ca.intermediates
    ]
    return [
        Change("create", "ca", name, common_name)
        for name, common_name in names
        if not _ca_files(ctx, name).key_path.exists()
    ]


def ensure_ca(ctx: LocalContext) -> dict[str, CaFiles]:
    """Create the CA hierarchy once; later calls load what is on disk."""
    ca = ctx.local.ca
    if ca is None:
        return {}
    root_files = _ca_files(ctx, ca.root.name)
    if root_files.key_path.exists():
        root = load_ca(root_files)
    else:
        root = create_root_ca(ca.root.common_name, ttl=ca.root.ttl)
        write_ca(root, ctx.state.ca_dir, ca.root.name)
    files = {ca.root.name: root_files}
    for inter in ca.intermediates:
        inter_files = _ca_files(ctx, inter.name)
        if not inter_files.key_path.exists():
            issued = issue_intermediate_ca(
                root, inter.trust_domain, common_name=inter.common_name, ttl=inter.ttl
            )
            write_ca(issued, ctx.state.ca_dir, inter.name)
        files[inter.name] = inter_files
    return files


def root_ca(ctx: LocalContext) -> CertificateAuthority | None:
    if ctx.local.ca is None:
        return None
    files = _ca_files(ctx, ctx.local.ca.root.name)
    return load_ca(files) if files.key_path.exists() else None


# ---- federation ----------------------------------------------------------------------


def _relationship(
    fed: Federation, remote: Server
) -> tuple[str, HttpsSpiffeProfile | HttpsWebProfile]:
    """The relationship as SPIRE's API takes it: the remote's local bundle endpoint URL and
    this relationship's own profile (its endpoint ID, not another server's)."""
    url = f"https://{remote.host}:{remote.ports.federation}"
    if fed.profile == "https_spiffe":
        return url, HttpsSpiffeProfile(endpoint_spiffe_id=SpiffeId.parse(endpoint_spiffe_id(fed)))
    return url, HttpsWebProfile()


def _federation_work(ctx: LocalContext, only: set[str] | None, apply: bool) -> list[Change]:
    """What federation needs (and, with ``apply``, do it). ``only`` limits it to servers
    that are running (a nested tier that has not started is skipped)."""
    changes: list[Change] = []
    for fed in ctx.local.federations:
        remote = next(iter(ctx.local.servers_of(fed.trust_domain)), None)
        if remote is None or (only is not None and not {fed.server, remote.name} <= only):
            continue
        url, profile = _relationship(fed, remote)
        td = fed.trust_domain
        name = f"{fed.server} -> {fed.trust_domain}"
        with ctx.server_client(fed.server) as oc:
            try:
                existing = oc.get_federation_relationship(td)
            except NotFoundError:
                existing = None
            try:
                oc.get_federated_bundle(td)
                has_bundle = True
            except NotFoundError:
                has_bundle = False
            if existing is None:
                changes.append(Change("create", "federation", name, f"{fed.profile} {url}"))
            elif existing.bundle_endpoint_url != url or existing.profile != profile:
                changes.append(
                    Change("update", "federation", name, url,
                           ("bundle_endpoint_url", "bundle_endpoint_profile"))
                )  # fmt: skip
            if existing is not None and not has_bundle:
                changes.append(Change("set", "federated-bundle", name, "bootstrap from the API"))
            if not apply:
                continue
            with ctx.server_client(remote.name) as rc:
                remote_bundle = rc.get_bundle()
            if existing is None:
                oc.create_federation_relationships(
                    [FederationRelationship(td, url, profile, remote_bundle)]
                ).raise_for_errors()
            elif existing.bundle_endpoint_url != url or existing.profile != profile:
                oc.update_federation_relationships(
                    [FederationRelationship(td, url, profile)],
                    fields=["bundle_endpoint_url", "bundle_endpoint_profile"],
                ).raise_for_errors()
            if existing is not None and not has_bundle:
                # deleted behind our back: put the current one back
                oc.set_federated_bundles([remote_bundle]).raise_for_errors()
    return changes


def federation_changes(ctx: LocalContext, running: set[str]) -> list[Change]:
    return _federation_work(ctx, running, apply=False)


def bootstrap_federation(ctx: LocalContext, running: set[str]) -> None:
    _federation_work(ctx, running, apply=True)


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
            try:
                token = client.create_join_token(
                    ttl=JOIN_TOKEN_TTL_S, agent_id=agent_alias_id(ctx.local, a)
                )
            except SpireApiError as err:
                raise UpError(f"join token for {a.name}: {err}") from err
        _reset_agent_data(ctx, a)
        ctx.record.join_tokens[a.name] = token.value
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
    t = ctx.local
    entries = []
    for w in t.workloads:
        agent = t.agent(w.agent)
        if agent.server != server:
            continue
        entries.append(
            Entry(
                spiffe_id=SpiffeId.parse(w.spiffe_id),
                parent_id=agent_alias_id(t, agent),
                selectors=tuple(Selector.parse(s) for s in workload_selectors(w, "local")),
                x509_svid_ttl=int(w.x509_svid_ttl.total_seconds()) if w.x509_svid_ttl else 0,
                jwt_svid_ttl=int(w.jwt_svid_ttl.total_seconds()) if w.jwt_svid_ttl else 0,
                federates_with=w.federates_with,
                dns_names=tuple(w.dns_names),
                downstream=w.downstream,
                hint=w.hint or "",
            )
        )
    return entries


def entry_changes(ctx: LocalContext, server: str) -> list[Change]:
    with ctx.server_client(server) as client:
        current = list(client.list_entries(timeout=10))
    plan = plan_entries(current, desired_entries(ctx, server), owner=entry_owner(ctx.local))
    return [
        Change(
            c.action,
            "entry",
            str(c.entry.spiffe_id),
            f"on {server}, parent {c.entry.parent_id}",
            tuple(sorted(f.value for f in c.fields)),
        )
        for c in plan.changes
    ]


def apply_workload_entries(ctx: LocalContext, servers: list[str]) -> None:
    for name in servers:
        with ctx.server_client(name) as client:
            result = apply_entries(client, desired_entries(ctx, name), owner=entry_owner(ctx.local))
        try:
            result.raise_for_errors()
        except Exception as err:
            raise UpError(f"registering entries on {name}: {err}") from err
