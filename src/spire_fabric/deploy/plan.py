"""``plan``: what ``up`` would do, before anything happens (like ``terraform plan``).

Locally it reads the recorded state, the files, the supervisor and the live servers and
lists each change (processes to start or restart, configs, entries with their changed
fields, federation); "no changes" when all is well. On Kubernetes it diffs against the live
clusters (a dry-run server-side apply of every object).
Exit status: 0 no changes, 2 changes, 1 error.
"""

from __future__ import annotations

import argparse
import gc
from collections import Counter
from dataclasses import dataclass, replace

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spire_fabric.deploy._common import Chosen, UsageError, add_deployment_args, choose
from spire_fabric.deploy._output import (
    ROWS_PER_KIND,
    print_plan,
    print_target_notes,
    print_warnings,
)
from spire_fabric.render.kubernetes import staged_objects
from spire_fabric.runtime.deployment import Deployment, DeploymentPlan
from spire_fabric.runtime.targets import TargetError
from spire_fabric.topology import (
    MySqlDatastore,
    PostgresDatastore,
    SqliteDatastore,
    Target,
    Topology,
    TopologyError,
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
        if w.run is not None and target == "local":
            what = f"python -m {w.run.module}" if w.run.module else " ".join(w.run.command)
            on_port = f" on port {w.run.port}" if w.run.port else ""
            items.append(PlanItem("workload", w.name, f"{what}{on_port}"))
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


EXIT_NO_CHANGES, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("plan", help="show what `up` would change (exit 2 if anything would)")
    add_deployment_args(p, settings=True)
    p.add_argument("--output", choices=("table", "json"), default="table",
                   help="a table (default) or JSON for scripts")  # fmt: skip
    p.set_defaults(run=run, usage_exit=EXIT_ERROR)


def full_plan(chosen: Chosen, deployment: Deployment) -> DeploymentPlan:
    """The deployment's plan, led by the settings the given flags change (and so why the
    configs and processes below change)."""
    plan = deployment.plan()
    settings = chosen.provider.setting_changes(chosen.state_dir, chosen.options)
    return replace(plan, changes=(*settings, *plan.changes))


def run(args: argparse.Namespace, console: Console) -> int:
    # Without the cyclic garbage collector while `plan` runs: it makes a few acyclic
    # objects per workload and entry (50k workloads, their localized copies, entries,
    # changes), which reference counting frees; the collector's passes over them found
    # nothing and were 0.3 s of a 50k-registration plan's 1.8 s of CPU. `plan` is a
    # short-lived command (the entries CLI does the same); `up`, which plans too, does not.
    gc.disable()
    try:
        return _run(args, console)
    finally:
        gc.enable()


def _run(args: argparse.Namespace, console: Console) -> int:
    chosen = choose(args)
    fresh = not chosen.provider.holds(chosen.state_dir)
    with chosen.create() as deployment:
        try:
            plan = full_plan(chosen, deployment)
        except (TopologyError, TargetError) as err:
            raise UsageError(str(err)) from err
    if args.output == "json":
        print(plan.to_json())
        print_warnings(deployment.topology, deployment.target, Console(stderr=True))
        print_target_notes(deployment, Console(stderr=True))
    else:
        if fresh:
            _print_items(deployment.topology, deployment.target, console)
        print_plan(plan, console)
        print_warnings(deployment.topology, deployment.target, console)
        print_target_notes(deployment, console)
    return EXIT_CHANGES if plan else EXIT_NO_CHANGES


def _print_items(topology: Topology, target: Target, console: Console) -> None:
    table = Table(title=f"{topology.name} on {target}: what up runs", title_justify="left")
    for column in ("kind", "name", "detail"):
        table.add_column(column, overflow="fold")
    rows: Counter[str] = Counter()
    for item in plan_items(topology, target):
        rows[item.kind] += 1
        if rows[item.kind] <= ROWS_PER_KIND:
            table.add_row(escape(item.kind), escape(item.name), escape(item.detail))
    for kind, n in rows.items():
        if n > ROWS_PER_KIND:
            more = f"... {n - ROWS_PER_KIND} more"
            table.add_row(escape(kind), more, "(--output json lists every change)")
    console.print(table)
