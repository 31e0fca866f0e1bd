"""Issue 23's failover drills on the clusters, run by test_installer.py (which imports
the test right before its `down` test, so it runs with that module's fixtures on the
enterprise preset's 2 downstream replicas). Kept apart because of its size; pytest does not
collect this file by itself (its name is not test_*).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kubernetes_clusters._kube import DOWNSTREAM, Kube

if TYPE_CHECKING:
    from kubernetes_clusters.test_installer import KubeDeploy


def _wait_green(installer: KubeDeploy, timeout: float = 240) -> dict[str, Any]:
    from kubernetes_clusters.test_installer import _wait_green as wait_green

    return wait_green(installer, timeout)


HA_REPORT = Path("/tmp/ha-drills.json")
HA_SERVER, HA_NS = "spire-downstream-server", "spire-downstream"


def _cordoned(k: Kube, names: list[str]) -> contextlib.AbstractContextManager[None]:
    """Nodes ``names`` unschedulable until the block ends (running pods stay)."""

    @contextlib.contextmanager
    def cordon() -> Iterator[None]:
        for name in names:
            k.core.patch_node(name, {"spec": {"unschedulable": True}})
        try:
            yield
        finally:
            for name in names:
                k.core.patch_node(name, {"spec": {"unschedulable": False}})

    return cordon()


SLOW_MS = 1000.0


def _explained(k: Kube, load: Any, window: dict[str, Any], since: float) -> dict[str, Any]:
    """``window`` with what explains its failures, for the assertion message: each
    failure's time, and the gateway's and enterprise-api's log lines since ``since``
    (wall clock) that report a failure or took over SLOW_MS (their pods' logs go with the
    clusters, so a CI run keeps only what its message holds)."""
    import re

    failures = [(round(t - since, 1), flow, why[:120]) for t, flow, why in load.failure_log
                if t >= since]  # fmt: skip
    lines: dict[str, list[str]] = {}
    for app in ("security-gateway", "enterprise-api"):
        selector = f"app.kubernetes.io/name={app}"
        pods = k.core.list_namespaced_pod("downstream-workloads", label_selector=selector)
        for pod in pods.items:
            try:
                text = k.core.read_namespaced_pod_log(
                    pod.metadata.name, "downstream-workloads", timestamps=True,
                    since_seconds=max(1, int(time.time() - since) + 1))  # fmt: skip
            except Exception as err:  # the explanation must not hide the failure
                lines[pod.metadata.name] = [f"(no log: {err})"]
                continue
            kept = []
            for line in text.splitlines():
                ms = re.search(r" ms=([0-9.]+)", line)
                if ("upstream-failed" in line or " ERROR " in line or " WARNING " in line
                        or (ms and float(ms[1]) >= SLOW_MS)):  # fmt: skip
                    kept.append(line[:400])
            lines[pod.metadata.name] = kept[-20:]
    return {**window, "failures_at_s": failures, "service_logs": lines}


def test_server_failover_drills_under_load(
    enterprise: dict[str, Any], installer: KubeDeploy, kubes: dict[str, Kube], tmp_path: Path
) -> None:
    """Issue 23's failover drills on the downstream server's 2 replicas, under one
    continuous TrafficLoad (gateway, cross-domain mTLS and JWT, data-processor's JWT posts):

    (a) one replica's pod deleted; (b) every container of a replica's node killed; (c) a
    rolling change of the servers through `up` (a pod-template change: the audit log off);
    each with a workload pod started mid-drill, registered by an entry created (server API)
    mid-drill, that must get its X.509-SVID and a freshly signed JWT-SVID which the
    verifier's bundle validates. 0 failed requests, then verify green. (d) last, so it
    disturbs none of them: the shared MariaDB stopped for a minute, what works while it is
    down measured and recorded, and `up` heals. Per drill: requests, failures, time to green,
    to /tmp/ha-drills.json and the output."""
    from drill.failover import (
        NewWorkload,
        kill_node_containers,
        node_of,
        pod_ready,
        server_pods,
        wait_for,
        window_of,
    )
    from drill.load import PROCESSOR, TrafficLoad

    from spire_fabric.deploy import attach
    from spire_fabric.topology import dump_topology

    k = kubes[DOWNSTREAM]
    drills: dict[str, Any] = {}

    def live() -> list[Any]:
        return [p for p in server_pods(k.core, HA_NS, HA_SERVER)
                if p.metadata.deletion_timestamp is None]  # fmt: skip

    def replicas_ready(gone: set[str]) -> bool:
        ready = [p for p in live() if pod_ready(p) and p.metadata.uid not in gone]
        return len(ready) == 2

    def node_of_app(ns: str, app: str) -> str:
        (pod,) = [p for p in k.core.list_namespaced_pod(
            ns, label_selector=f"app.kubernetes.io/name={app}").items
            if p.metadata.deletion_timestamp is None]  # fmt: skip
        return str(pod.spec.node_name)

    def green(t0: float) -> float:
        report = _wait_green(installer, timeout=300)
        assert report["ok"], [c for c in report["checks"] if not c["ok"]]
        return round(time.monotonic() - t0, 1)

    def record(name: str, window: dict[str, Any], **facts: Any) -> None:
        drills[name] = {**facts, "load": window}
        HA_REPORT.write_text(json.dumps(drills, indent=2))
        print(f"ha drill {name}: {window['requests']} requests, {window['failures']} failed "
              f"in {window['seconds']}s; {json.dumps(facts)}", flush=True)  # fmt: skip

    assert len(live()) == 2 and all(pod_ready(p) for p in live()), live()
    processor_node = node_of_app("downstream-workloads", PROCESSOR)
    mysql_node = node_of_app(HA_NS, "spire-downstream-mysql")
    with attach("enterprise", state_dir=installer.state_dir) as d:
        load = TrafficLoad(d, pause=0.2, warmup=240)
        load.start()
        try:
            # (a) one replica's pod deleted: the one not on data-processor's node, its
            # replacement placed there (the other nodes cordoned meanwhile) for (b)
            before, t0 = load.report(), time.monotonic()
            wall = time.time()
            victim = next((p for p in live() if p.spec.node_name != processor_node), live()[0])
            leaders = {r.name for r in d.server_replicas(HA_SERVER) if r.leader}
            placed = any(p.spec.node_name == processor_node for p in live())
            others = [] if placed else [n["name"] for n in k.nodes
                                        if n["name"] != processor_node]  # fmt: skip
            with _cordoned(k, others):
                k.core.delete_namespaced_pod(victim.metadata.name, HA_NS)
                with NewWorkload(d, "a") as new:
                    wait_for("the replacement replica scheduled", lambda: any(
                        p.spec.node_name and p.metadata.uid != victim.metadata.uid
                        and p.metadata.name == victim.metadata.name for p in live()),
                        timeout=120)  # fmt: skip
                    arrival = new.wait_identity()
            back = wait_for("both replicas ready", lambda: replicas_ready(
                {victim.metadata.uid}), timeout=180)  # fmt: skip
            to_green = green(t0)
            window = window_of(before, load.report())
            record("a-replica-pod-deleted", window, pod=victim.metadata.name,
                   was_leader=victim.metadata.name in leaders,
                   replica_ready_s=round(back, 1), time_to_green_s=to_green,
                   new_workload=arrival.__dict__)  # fmt: skip
            assert window["failures"] == 0, _explained(k, load, window, wall)
            assert arrival.jwt_refused_first == 0, arrival

            # (b) every container of the node that runs a replica and data-processor
            # killed (every downstream node runs one example workload; this one only
            # serves the processor's flow); the other replica's node left alone
            before, t0 = load.report(), time.monotonic()
            wall = time.time()
            on_node = [p for p in live() if p.spec.node_name == processor_node]
            assert on_node, (processor_node, [(p.metadata.name, p.spec.node_name)
                                              for p in live()])  # fmt: skip
            restarts = {p.metadata.uid: sum(cs.restart_count for cs in p.status.container_statuses
                                            or []) for p in on_node}  # fmt: skip
            # recorded: CoreDNS runs 2 replicas on 2 of the 3 nodes, so this node may run one
            dns = k.core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns")
            dns_on_node = sum(p.spec.node_name == processor_node for p in dns.items)
            killed = kill_node_containers(node_of(k.nodes, processor_node))
            with NewWorkload(d, "b") as new:
                arrival = new.wait_identity(timeout=240)
            back = wait_for("both replicas ready after the node's kill", lambda: replicas_ready(
                set()) and all(p.metadata.uid not in restarts or sum(
                    cs.restart_count for cs in p.status.container_statuses or [])
                    > restarts[p.metadata.uid] for p in live()), timeout=240)  # fmt: skip
            to_green = green(t0)
            window = window_of(before, load.report())
            record("b-replica-node-killed", window, node=processor_node, containers=killed,
                   mysql_on_node=mysql_node == processor_node, dns_on_node=dns_on_node,
                   replica_ready_s=round(back, 1), time_to_green_s=to_green,
                   new_workload=arrival.__dict__)  # fmt: skip
            # the flows that need no process of the killed node but a CoreDNS replica (the
            # other one answers; a lookup refused meanwhile is tried again): not one failure
            untouched = {f: c for f, c in window["flows"].items() if f != "processor-jwt"}
            assert sum(c["failures"] for c in untouched.values()) == 0, _explained(
                k, load, window, wall)  # fmt: skip
            # processor-jwt's client is data-processor itself (its JWT-SVID is fetched in its
            # container): while that container is dead the request cannot be made at all.
            # Those attempts, and only those, may fail, and only so; (c) then asserts 0
            # failures of every flow, processor-jwt included, so it must have recovered.
            processor_pods = {p.metadata.name for p in k.core.list_namespaced_pod(
                "downstream-workloads", label_selector=f"app.kubernetes.io/name={PROCESSOR}"
            ).items}  # fmt: skip
            absent = [f"cannot exec in pod downstream-workloads/{pod} " for pod in processor_pods]
            absent.append(f"no running pod app.kubernetes.io/component=workload,"
                          f"app.kubernetes.io/name={PROCESSOR} in namespace downstream-workloads")
            for reason in window["flows"]["processor-jwt"]["reasons"]:
                assert any(a in reason for a in absent), (reason, processor_pods)  # fmt: skip

            # (c) a rolling change of the servers through `up`: the audit log off changes
            # the server's config and its pod template, so the StatefulSet rolls
            doc = yaml.safe_load(dump_topology(d.topology))  # what runs, changed in one field
            server_doc = next(s for s in doc["servers"] if s["name"] == HA_SERVER)
            server_doc["audit_log_enabled"] = False
            changed = tmp_path / "enterprise-audit-off.yaml"
            changed.write_text(yaml.safe_dump(doc, sort_keys=False))
            before, t0 = load.report(), time.monotonic()
            wall = time.time()
            old_uids = {p.metadata.uid for p in live()}
            with concurrent_up(installer, changed) as up_done:
                wait_for("the rolling change replaced a replica", lambda: any(
                    p.metadata.uid not in old_uids for p in live()), timeout=300)  # fmt: skip
                with NewWorkload(d, "c") as new:
                    arrival = new.wait_identity(timeout=240)
                up = up_done()
            assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-2000:]
            assert " 0 failed" in up.stdout, up.stdout[-4000:]
            assert not {p.metadata.uid for p in live()} & old_uids
            to_green = green(t0)
            window = window_of(before, load.report())
            record("c-rolling-change-through-up", window, change="audit_log_enabled: false",
                   up_s=round(up_done.seconds, 1), time_to_green_s=to_green,
                   new_workload=arrival.__dict__)  # fmt: skip
            assert window["failures"] == 0, _explained(k, load, window, wall)
            assert arrival.jwt_refused_first == 0, arrival

            # (d) the shared MariaDB stopped for a minute, measured (no zero-failure claim)
            drills["d-mariadb-stopped"] = _mariadb_outage(d, k, installer, changed, load,
                                                          record)  # fmt: skip
        finally:
            report = load.stop()
            drills["load_total"] = report.to_json()
            HA_REPORT.write_text(json.dumps(drills, indent=2))
    print(f"ha drills: {report.summary()}")


@dataclass
class _Up:
    """`up` running in a thread; call it for the result (waits)."""

    thread: Any
    result: list[subprocess.CompletedProcess[str]]
    started: float
    seconds: float = 0.0

    def __call__(self) -> subprocess.CompletedProcess[str]:
        self.thread.join(1000)
        assert self.result, "`up` did not finish"
        return self.result[0]


@contextlib.contextmanager
def concurrent_up(installer: KubeDeploy, topology: Path) -> Iterator[_Up]:
    """`up --topology TOPOLOGY` in a thread for the block's length."""
    import threading

    result: list[subprocess.CompletedProcess[str]] = []
    job = _Up(None, result, time.monotonic())

    def run() -> None:
        result.append(installer.run("up", "--topology", str(topology), timeout=900))
        job.seconds = time.monotonic() - job.started

    job.thread = threading.Thread(target=run, daemon=True)
    job.thread.start()
    try:
        yield job
    finally:
        job.thread.join(1000)


MARIADB_OUTAGE_SECONDS = 60.0


def _mariadb_outage(d: Any, k: Kube, installer: KubeDeploy, topology: Path, load: Any,
                    record: Callable[..., None]) -> dict[str, Any]:  # fmt: skip
    """Drill (d): the downstream MariaDB stopped for MARIADB_OUTAGE_SECONDS (its Deployment
    scaled to 0: a deleted pod was back in 16 s, shorter than one round of the probes), then
    `up` heals (it scales it back) and verify is green. Throughout, each probe runs in a
    loop of its own, about once a second, and every answer is kept with its time: how many
    server replicas are ready, a workload's Workload API with its cached X.509-SVID, a
    JWT-SVID for an audience already cached and for a new one (signed now), and the entry of a
    workload made when the outage starts, and when that workload gets its identity. What
    worked while the datastore was down is measured and recorded, not asserted."""
    import threading

    from drill.failover import NewWorkload, pod_ready, server_pods, wait_for, window_of
    from drill.load import API, PROCESSOR

    ns, app = HA_NS, "spire-downstream-mysql"

    def mysql_pods() -> list[Any]:
        return list(k.core.list_namespaced_pod(
            ns, label_selector=f"app.kubernetes.io/name={app}").items)  # fmt: skip

    api_id = str(d.topology.workload(API).spiffe_id)  # the audience the load's posts use
    before, t0 = load.report(), time.monotonic()
    answers: list[dict[str, Any]] = []
    stop = threading.Event()
    new = NewWorkload(d, "d")

    def ready_servers() -> str:
        return str(sum(pod_ready(p) for p in server_pods(k.core, ns, HA_SERVER)))

    def register() -> str:
        if not new.registered:
            new.register(timeout=0)
        return "ok"

    probes: dict[str, Callable[[], object]] = {
        "servers_ready": ready_servers,
        "x509_cached": lambda: d.x509_context(PROCESSOR),
        "jwt_cached_audience": lambda: d.jwt_svid(PROCESSOR, api_id),
        "jwt_new_audience": lambda: d.jwt_svid(PROCESSOR, f"outage-{time.time_ns()}"),
        "entry_create": register,
    }

    def loop(name: str, probe: Callable[[], object]) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                value = probe()
                result = value if isinstance(value, str) else "ok"
            except Exception as err:
                result = f"{type(err).__name__}: {str(err)[:160]}"
            answers.append({"probe": name, "t": round(started - t0, 1),
                            "took": round(time.monotonic() - started, 1), "result": result})
            stop.wait(1.0)

    k.apps.patch_namespaced_deployment_scale(app, ns, {"spec": {"replicas": 0}})
    threads = [threading.Thread(target=loop, args=item, daemon=True) for item in probes.items()]
    try:
        new.create_pod()
        for t in threads:
            t.start()
        down_s = wait_for("the MariaDB pod gone", lambda: not mysql_pods(), timeout=120)
        time.sleep(MARIADB_OUTAGE_SECONDS)
        t_up = time.monotonic()
        up = installer.run("up", "--topology", str(topology), timeout=900)
        up_s = round(time.monotonic() - t_up, 1)
        assert up.returncode == 0 and " 0 failed" in up.stdout, up.stdout[-4000:]
        back_s = round(time.monotonic() - t0, 1)
        assert any(pod_ready(p) for p in mysql_pods()), "`up` did not bring MariaDB back"
        # the entry probe's loop keeps trying (one call at a time: no second create)
        wait_for("the new workload's entry taken", lambda: new.registered, timeout=180)
        arrival = new.wait_identity(timeout=600)  # counted from the pod's creation
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        new.close()
    window = window_of(before, load.report())
    report = _wait_green(installer)
    assert report["ok"], [c for c in report["checks"] if not c["ok"]]
    down_from = round(down_s, 1)
    facts = {"outage": {"from_s": down_from, "to_s": back_s,
                        "probes": _outage_summary(answers, down_from, back_s)},
             "up_heal_s": up_s, "new_workload": arrival.__dict__,
             "time_to_green_s": round(time.monotonic() - t0, 1)}  # fmt: skip
    record("d-mariadb-stopped", window, **facts)
    return {**facts, "answers": answers, "load": window}


def _outage_summary(answers: list[dict[str, Any]], start: float, end: float
                    ) -> dict[str, Any]:  # fmt: skip
    """Per probe, the answers that began while MariaDB was down: how many, how many were
    ``ok`` (or, for servers_ready, each count seen), the first other answer, and the
    slowest."""
    summary: dict[str, Any] = {}
    for a in answers:
        if not start <= a["t"] <= end:
            continue
        s = summary.setdefault(a["probe"], {"answers": 0, "ok": 0, "first_failure": None,
                                            "slowest_s": 0.0, "seen": []})  # fmt: skip
        s["answers"] += 1
        s["slowest_s"] = max(s["slowest_s"], a["took"])
        if a["probe"] == "servers_ready":
            if a["result"] not in s["seen"]:
                s["seen"].append(a["result"])
        elif a["result"] == "ok":
            s["ok"] += 1
        elif s["first_failure"] is None:
            s["first_failure"] = f"at {a['t']} s: {a['result']}"
    return summary
