"""A workload scaled to 100 pods on the test clusters: how long until the controller manager
has made an entry for every pod, and until every pod holds its SVID (issue 25, item 2).

The `basic` preset on the downstream test cluster (three nodes, so 100 pods stay under
the kubelet's 110-pod limit per node): one server with its controller manager, one agent
on every node, and `example-app`, the API example, the smallest workload image we have
that fetches an SVID (the project image; it opens its port only once the agent has given
it one). After `up` to green, its Deployment is scaled from 1 to N pods and the clock
starts:

- entries: the server's entries for example-app's SPIFFE ID, one per pod (each with its
  pod's UID as a selector), counted through the Server API every second;
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

DOWNSTREAM = "downstream-spire-cluster"
WORKLOAD = "example-app"
NAMESPACE = "apps"


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _pods(core: Any) -> list[Any]:
    selector = f"app.kubernetes.io/name={WORKLOAD}"
    return list(core.list_namespaced_pod(NAMESPACE, label_selector=selector).items)


def _ready_at(pod: Any) -> float | None:
    for c in pod.status.conditions or []:
        if c.type == "Ready" and c.status == "True" and c.last_transition_time:
            return float(c.last_transition_time.timestamp())
    return None


def measure(state: Any, pods: int, timeout: float) -> dict[str, object]:
    from spire_fabric.runtime.kubernetes import KubernetesDeployment
    from spire_fabric.topology import preset

    spiffe_id = preset("basic").workload(WORKLOAD).spiffe_id
    with KubernetesDeployment.open(state) as d:
        conn = d.clusters["spire-cluster"]
        server = d.topology.servers[0].name
        start_wall = time.time()
        start = time.monotonic()
        conn.apps.patch_namespaced_deployment_scale(
            WORKLOAD, NAMESPACE, {"spec": {"replicas": pods}}
        )
        entries_s = svids_s = None
        entries = ready = 0
        while time.monotonic() - start < timeout and (entries_s is None or svids_s is None):
            if entries_s is None:
                with d.server(server) as client:
                    entries = sum(1 for _ in client.list_entries(spiffe_id=spiffe_id, timeout=30))
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

    state = short_tempdir("sf-bench-pods-") / "state"
    where = ["--target", "kubernetes", "--state-dir", str(state)]
    with test_clusters() as extra:
        load_before = load()
        try:
            up = deploy("up", "--topology", "basic", "--context",
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
