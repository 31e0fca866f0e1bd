"""A workload scaled to 100 pods on the test clusters: how long until the controller manager
has made an entry for every pod, and until every pod holds its SVID (issue 25, item 2).

The `basic` preset on the downstream test cluster (three nodes, so 100 pods fit its pod
ranges, a /26 per node), with one agent per node: `basic`'s agent, and two more of the same
kind with a copy of `example-app` each (`example-app-2`, `example-app-3`, their own service
accounts and SPIFFE IDs). One agent DaemonSet on every node would not do here: the test
nodes share one filesystem, so its pods would share one hostPath socket directory and a
workload would reach whichever agent bound the socket last, whose kubelet does not know the
pod (docs/kubernetes-test-clusters.md). Each agent has its own directory and node, and each
workload runs next to its agent, as `agent_node_selector` renders it.

`example-app` is the API example, the smallest workload image we have that fetches an SVID
(the project image; it opens its port only once the agent has given it one). After `up` to
green, the three Deployments are scaled from 1 pod each to N pods in all (split evenly) and
the clock starts:

- entries: the server's entries for the three SPIFFE IDs, one per pod (each with its pod's
  UID as a selector), counted through the Server API every second;
- SVIDs: a pod is Ready when its process holds its SVID and listens (its readiness probe);
  per pod, Ready's transition time minus the pod's creation, as the API server records
  both (whole seconds).

Prints time to N entries, to N SVIDs (all pods Ready), and p50/p99 per pod; writes
benchmarks/results/k8s_pods.csv. Bounded: gives up after --timeout seconds. A benchmark,
not a test; it takes the clusters' lock itself (see _clusters.py) and ends with
`down --purge`.

    python benchmarks/bench_k8s_pods.py [--pods 100] [--timeout 600]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from spire_fabric.testing import short_tempdir
from spire_fabric.topology import dump_topology

DOWNSTREAM = "downstream-spire-cluster"
WORKLOADS = ("example-app", "example-app-2", "example-app-3")  # one per agent, one agent per node
NAMESPACE = "apps"


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _pods(core: Any) -> list[Any]:
    selector = f"app.kubernetes.io/name in ({','.join(WORKLOADS)})"
    return list(core.list_namespaced_pod(NAMESPACE, label_selector=selector).items)


def one_agent_per_node() -> Any:
    """`basic` with two more agents and a copy of example-app for each (see the module)."""
    import dataclasses

    from spire_fabric.topology import preset

    t = preset("basic")
    (agent,) = t.agents
    (app,) = t.workloads
    assert agent.health_port and agent.telemetry_port and app.kubernetes
    agents, workloads = [agent], [app]
    for i in (2, 3):
        name = f"{app.name}-{i}"
        agents.append(dataclasses.replace(agent, name=f"{agent.name}-{i}",
                                          health_port=agent.health_port + i,
                                          telemetry_port=agent.telemetry_port + i))  # fmt: skip
        workloads.append(dataclasses.replace(
            app, name=name, agent=f"{agent.name}-{i}",
            spiffe_id=app.spiffe_id.replace(app.name, name),
            selectors=(f"k8s:ns:{NAMESPACE}", f"k8s:sa:{name}"),
            local_selectors=(f"unix:uid:{1000 + i}",),
            kubernetes=dataclasses.replace(app.kubernetes, service_account=name)))  # fmt: skip
    return dataclasses.replace(t, agents=tuple(agents), workloads=tuple(workloads))


def _ready_at(pod: Any) -> float | None:
    for c in pod.status.conditions or []:
        if c.type == "Ready" and c.status == "True" and c.last_transition_time:
            return float(c.last_transition_time.timestamp())
    return None


def measure(state: Any, pods: int, timeout: float) -> dict[str, object]:
    from spire_fabric.runtime.kubernetes import KubernetesDeployment

    with KubernetesDeployment.open(state) as d:
        conn = d.clusters["spire-cluster"]
        server = d.topology.servers[0].name
        ids = [d.topology.workload(w).spiffe_id for w in WORKLOADS]
        start_wall = time.time()
        start = time.monotonic()
        for i, w in enumerate(WORKLOADS):  # N split evenly, the first ones one more
            share = pods // len(WORKLOADS) + (1 if i < pods % len(WORKLOADS) else 0)
            conn.apps.patch_namespaced_deployment_scale(
                w, NAMESPACE, {"spec": {"replicas": share}}
            )
        entries_s = svids_s = None
        entries = ready = 0
        while time.monotonic() - start < timeout and (entries_s is None or svids_s is None):
            if entries_s is None:
                with d.server(server) as client:
                    entries = sum(1 for spiffe_id in ids
                                  for _ in client.list_entries(spiffe_id=spiffe_id,
                                                               timeout=30))  # fmt: skip
                if entries >= pods:
                    entries_s = time.monotonic() - start
            if svids_s is None:
                current = _pods(conn.core)
                ready = sum(1 for p in current if _ready_at(p) is not None)
                if len(current) >= pods and ready >= pods:
                    svids_s = time.monotonic() - start
            print(f"  {time.monotonic() - start:5.0f} s: {entries} entries, {ready} pods ready",
                  flush=True)  # fmt: skip
            time.sleep(1)
        per_pod = []
        for p in _pods(conn.core):
            at = _ready_at(p)
            created = p.metadata.creation_timestamp.timestamp()
            if at is not None and created >= start_wall - 1:  # the new pods, not the first
                per_pod.append(at - created)
    if entries_s is None or svids_s is None:
        raise SystemExit(f"not done after {timeout:.0f} s: {entries} entries, {ready} pods ready")
    return {"pods": pods, "to_entries_s": round(entries_s, 1), "to_svids_s": round(svids_s, 1),
            "per_pod_p50_s": _percentile(per_pod, 50), "per_pod_p99_s": _percentile(per_pod, 99),
            "per_pod_n": len(per_pod)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    from _clusters import deploy, test_clusters
    from _results import load, write_rows

    root = short_tempdir("sf-bench-pods-")
    state = root / "state"
    topology = root / "basic-one-agent-per-node.yaml"
    topology.write_text(dump_topology(one_agent_per_node()))
    where = ["--target", "kubernetes", "--state-dir", str(state)]
    with test_clusters() as extra:
        load_before = load()
        try:
            up = deploy("up", "--topology", str(topology), "--context",
                        f"spire-cluster={DOWNSTREAM}", *where, extra=extra)  # fmt: skip
            if up.returncode != 0:
                raise SystemExit(f"up exited {up.returncode}:\n{up.stdout[-4000:]}")
            row = measure(state, args.pods, args.timeout)
        finally:
            if state.exists():
                down = deploy("down", "--purge", *where, extra=[], timeout=900)
                if down.returncode != 0:
                    print(f"down exited {down.returncode}:\n{down.stdout}\n{down.stderr}")
    row["load_1m"] = round(load_before, 2)
    print(
        f"\n{args.pods} pods: {args.pods} controller-manager entries in {row['to_entries_s']} s, "
        f"every pod Ready with its SVID in {row['to_svids_s']} s; per pod (creation to "
        f"Ready) p50 {row['per_pod_p50_s']:.0f} s, p99 {row['per_pod_p99_s']:.0f} s "
        f"over {row['per_pod_n']} pods; load {load_before:.2f} before"
    )
    write_rows("k8s_pods", [row])
    return 0


if __name__ == "__main__":
    sys.exit(main())
