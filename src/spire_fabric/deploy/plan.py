"""``plan``: what ``up`` would create, one line per thing, before anything happens."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spire_fabric.deploy._common import add_topology_args, resolve_topology
from spire_fabric.render.kubernetes import staged_objects
from spire_fabric.topology import (
    MySqlDatastore,
    PostgresDatastore,
    SqliteDatastore,
    Target,
    Topology,
    agent_node_attestor,
    bundle_endpoint_url,
    controller_manager_enabled,
    effective_datastore,
    server_address_for,
    workload_selectors,
)

_DATASTORE_NAMES = {
    SqliteDatastore: "SQLite",
    MySqlDatastore: "MySQL",
    PostgresDatastore: "PostgreSQL",
}


@dataclass(frozen=True)
class PlanItem:
    kind: str
    name: str
    detail: str


def plan_items(topology: Topology, target: Target) -> list[PlanItem]:
    """The things ``up`` creates, in creation order. Pure, so tests and the dashboard
    can use it too."""
    items: list[PlanItem] = []
    if topology.ca is not None:
        items.append(PlanItem("root CA", topology.ca.root.name, topology.ca.root.common_name))
        for i in topology.ca.intermediates:
            items.append(
                PlanItem("intermediate CA", i.name, f"URI constraint {i.permitted_uri_domain}")
            )
    if target == "kubernetes":
        for c in topology.clusters:
            items.append(PlanItem("cluster", c.name, "namespaces " + ", ".join(c.namespaces)))
        items += _manifest_items(topology)
    for s in topology.servers:
        where = (
            f"{s.kubernetes.namespace}@{s.kubernetes.cluster}"
            if target == "kubernetes" and s.kubernetes
            else f"{s.host}:{s.ports.api}"
        )
        ds = _DATASTORE_NAMES[type(effective_datastore(s, target))]
        items.append(PlanItem("server", s.name, f"{s.trust_domain} {where} datastore {ds}"))
        if target == "kubernetes" and controller_manager_enabled(topology, s):
            items.append(PlanItem("controller manager", s.name, "spire-controller-manager"))
    for f in topology.federations:
        items.append(
            PlanItem(
                "federation",
                f"{f.server} -> {f.trust_domain}",
                f"{f.profile} {bundle_endpoint_url(topology, f, target)}",
            )
        )
    for a in topology.agents:
        host, port = server_address_for(topology, a, target)
        items.append(
            PlanItem("agent", a.name, f"{agent_node_attestor(a, target)} -> {host}:{port}")
        )
    for w in topology.workloads:
        sel = ",".join(workload_selectors(w, target))
        items.append(PlanItem("entry", w.name, f"{w.spiffe_id} [{sel}] via {w.agent}"))
    return items


def _manifest_items(topology: Topology) -> list[PlanItem]:
    """One line per manifest file, counting its objects by kind, so the plan shows every
    Kubernetes object ``up`` applies without a hundred rows."""
    items: list[PlanItem] = []
    for cluster, file, objects in staged_objects(topology):
        kinds = Counter(o["kind"] for o in objects)
        detail = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        items.append(PlanItem("manifests", f"{cluster}/{file}", detail))
    return items


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("plan", help="show what `up` would create")
    add_topology_args(p)
    p.add_argument("--port-base", type=int, default=31000, help="as for `up` (local target)")
    p.add_argument("--datastore", default=None, metavar="URL", help="as for `up` (local target)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    topology = resolve_topology(args.topology)
    if args.target == "local":
        # show what `up` would really bind: the localized ports, datastore and selectors
        from spire_fabric.deploy._common import UsageError
        from spire_fabric.runtime.local.localize import LocalizeError, LocalSettings, localize

        try:
            topology = localize(
                topology, LocalSettings(port_base=args.port_base, datastore_url=args.datastore)
            )
        except LocalizeError as err:
            raise UsageError(str(err)) from err
    table = Table(title=f"plan: {topology.name} on {args.target}", title_justify="left")
    for column in ("kind", "name", "detail"):
        table.add_column(column, overflow="fold")
    for item in plan_items(topology, args.target):
        table.add_row(escape(item.kind), escape(item.name), escape(item.detail))
    console.print(table)
    return 0
