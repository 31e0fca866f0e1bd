"""Registration entries the installer itself keeps, and applying them, on every target.

Why parented to an agent's alias: a join token carries the alias ID the installer chose,
so entries survive an agent's re-attestation with a new token (its own SPIFFE ID changes,
the alias does not).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from spire_fabric.entries import EntryPlan, apply_entries
from spire_fabric.identity import agent_alias_id
from spire_fabric.runtime.core.errors import UpError
from spire_fabric.runtime.deployment import Change
from spire_fabric.server import Entry, Selector
from spire_fabric.topology import Target, Topology, workload_selectors

if TYPE_CHECKING:
    # annotations only: the client brings gRPC, which a local `plan` does not need
    from spire_fabric.server import SpireServerClient

__all__ = ["apply_registrations", "entry_changes", "entry_owner", "registration_entries"]


def entry_owner(topology: Topology) -> str:
    """The owner name under which `apply_entries` manages this topology's entries."""
    return f"spire-fabric-{topology.name}"


def registration_entries(topology: Topology, server: str, target: Target) -> list[Entry]:
    """The workload entries of ``server``, parented to their agent's alias, with the
    selectors the workload has on ``target``."""
    td = topology.server(server).trust_domain
    # one alias per agent of this server, looked up per workload (50k workloads must not
    # scan the agents or parse the same parent ID 50k times)
    parents = {a.name: agent_alias_id(td, a.name) for a in topology.agents_of(server)}
    # workloads share selector lists (locally every one has the user's uid): parse each once
    parsed: dict[tuple[str, ...], tuple[Selector, ...]] = {}
    out = []
    for w in topology.workloads:
        parent = parents.get(w.agent)
        if parent is None:
            continue
        texts = workload_selectors(w, target)
        selectors = parsed.get(texts)
        if selectors is None:
            selectors = parsed[texts] = tuple(Selector.parse(s) for s in texts)
        out.append(
            Entry(
                spiffe_id=w.parsed_spiffe_id,  # parsed once, by validation
                parent_id=parent,
                selectors=selectors,
                x509_svid_ttl=int(w.x509_svid_ttl.total_seconds()) if w.x509_svid_ttl else 0,
                jwt_svid_ttl=int(w.jwt_svid_ttl.total_seconds()) if w.jwt_svid_ttl else 0,
                federates_with=w.federates_with,
                dns_names=tuple(w.dns_names),
                downstream=w.downstream,
                hint=w.hint or "",
            )
        )
    return out


def apply_registrations(
    topology: Topology,
    servers: Iterable[str],
    server_client: Callable[[str], SpireServerClient],
    desired: Callable[[str], list[Entry]],
) -> None:
    """Reconcile each server's entries under this topology's owner; an error names the
    server and the entries SPIRE refused."""
    for name in servers:
        with server_client(name) as client:
            result = apply_entries(client, desired(name), owner=entry_owner(topology))
        try:
            result.raise_for_errors()
        except Exception as err:
            raise UpError(f"registering entries on {name}: {err}") from err


def entry_changes(server: str, plan: EntryPlan) -> list[Change]:
    """An entry plan as the plan's changes, naming the changed fields of each update."""
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
