"""`deploy --target kubernetes` on the two real test clusters: SPIRE in real pods (k8s_psat
agents, the k8s workload attestor, controller-manager registrations, MariaDB), verified by
the same checks as the local target, then healed, re-applied and removed.

One enterprise deployment for the module (it takes a few minutes to come up); each test
that breaks something heals it and asserts it did.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubernetes_clusters._kube import DOWNSTREAM, UPSTREAM, Kube

# A deployment from nothing (images loaded into every node first) takes minutes.
pytestmark = pytest.mark.timeout(1500)


ENTERPRISE_CONTEXTS: tuple[str, ...] = ()  # the defaults are the test clusters' names


@dataclass
class KubeDeploy:
    """Runs `python -m spire_fabric.deploy … --target kubernetes` like a user would."""

    state_dir: Path
    extra: list[str]

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "spire_fabric.deploy", *args, "--target", "kubernetes",
                "--state-dir", str(self.state_dir)]  # fmt: skip
        if args[0] in ("up", "plan"):
            argv += self.extra
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def ok(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        r = self.run(*args, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(
                f"`deploy {' '.join(args)}` exited {r.returncode}\n{r.stdout[-6000:]}\n"
                f"{r.stderr[-4000:]}"
            )
        return r


def object_lists(kubes: dict[str, Kube]) -> dict[str, list[str]]:
    """Every object of the kinds we apply, in both clusters (for "down leaves it as it was").
    Events, pods of system controllers and leases change on their own, so they are left out."""
    from spire_fabric.runtime.kubernetes._clusters import ClusterApi
    from spire_fabric.runtime.kubernetes._objects import OWNED_KINDS, resource

    out: dict[str, list[str]] = {}
    for name, k in kubes.items():
        conn = ClusterApi(name, name, k.api)
        items = []
        for api_version, kind in OWNED_KINDS:
            try:
                res = resource(conn, api_version, kind)
            except Exception:
                continue
            try:
                found = res.get().to_dict().get("items", [])
            except Exception:  # a kind whose CRD is gone (discovery is cached)
                continue
            for o in found:
                m = o["metadata"]
                items.append(f"{kind} {m.get('namespace', '')}/{m['name']}")
        for node in k.core.list_node().items:
            labels = sorted(node.metadata.labels.items())
            items.append(f"Node {node.metadata.name} {labels}")
        out[name] = sorted(items)
    return out


@pytest.fixture(scope="module")
def installer(kubes: dict[str, Kube], tmp_path_factory: pytest.TempPathFactory) -> KubeDeploy:
    from spire_fabric.testing.kubernetes import installer_args, load_installer_images

    load_installer_images(say=lambda _: None)
    return KubeDeploy(tmp_path_factory.mktemp("kube") / "enterprise", installer_args())


@pytest.fixture(scope="module")
def enterprise(
    installer: KubeDeploy, kubes: dict[str, Kube]
) -> Iterator[dict[str, Any]]:
    before = object_lists(kubes)
    started = time.monotonic()
    up = installer.run("up", "--topology", "enterprise")
    info = {"before": before, "up": up, "up_seconds": time.monotonic() - started}
    try:
        yield info
    finally:
        if installer.state_dir.exists():  # the last test takes it down itself
            down = installer.run("down", "--purge", timeout=600)
            assert down.returncode == 0, down.stdout + down.stderr


def test_enterprise_comes_up_to_a_fully_green_verify(enterprise: dict[str, Any]) -> None:
    up = enterprise["up"]
    assert up.returncode == 0, up.stdout[-8000:] + up.stderr[-4000:]
    assert " 0 failed" in up.stdout
    print(f"up to green verify: {enterprise['up_seconds']:.0f}s")


def test_the_checks_cover_what_the_issue_names(
    enterprise: dict[str, Any], installer: KubeDeploy
) -> None:
    report = json.loads(installer.ok("verify", "--output", "json").stdout)
    ids = {c["id"] for c in report["checks"]}
    for expected in (
        "server-live:spire-upstream-server",
        "datastore:spire-downstream-server",
        "agent-attested:downstream-agent-3",
        "entries:spire-downstream-server",
        "federated-bundle:spire-upstream-server->downstream.example.org",
        "federated-bundle:spire-downstream-server->enterprise-root.org",
        "workload-svid:enterprise-api",
        "mtls:upstream-client->enterprise-api",
        "jwt:enterprise-api->upstream-client",
        "workload-health:security-gateway",
    ):
        assert expected in ids, f"no check {expected}"
    assert all(c["ok"] for c in report["checks"]), [c for c in report["checks"] if not c["ok"]]
    datastore = next(c for c in report["checks"] if c["id"] == "datastore:spire-upstream-server")
    assert datastore["detail"].startswith("MySql"), datastore


def test_up_again_changes_nothing(enterprise: dict[str, Any], installer: KubeDeploy) -> None:
    plan = installer.run("plan", "--topology", "enterprise", "--output", "json")
    body = json.loads(plan.stdout)
    assert plan.returncode == 0, body["changes"]
    assert body["unchanged"] > 40
    again = installer.ok("up", "--topology", "enterprise")
    assert "no changes" in again.stdout


def test_a_changed_ttl_is_exactly_one_changed_object(
    enterprise: dict[str, Any], installer: KubeDeploy, tmp_path: Path
) -> None:
    from spire_fabric.topology import dump_topology, preset

    doc = yaml.safe_load(dump_topology(preset("enterprise")))
    api = next(w for w in doc["workloads"] if w["name"] == "enterprise-api")
    api["x509_svid_ttl"] = "2h"
    path = tmp_path / "enterprise.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    plan = installer.run("plan", "--topology", str(path), "--output", "json")
    changes = json.loads(plan.stdout)["changes"]
    assert plan.returncode == 2 and len(changes) == 1, changes
    (change,) = changes
    assert change["kind"] == "ClusterSPIFFEID" and change["action"] == "update"
    assert change["name"].endswith("enterprise-api") and "spec.ttl" in change["fields"]


def _wait_green(installer: KubeDeploy, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = installer.run("verify", "--output", "json")
        report = json.loads(r.stdout)
        if r.returncode == 0 or time.monotonic() > deadline:
            return report
        time.sleep(5)


def test_a_deleted_agent_pod_comes_back_and_verify_goes_green(
    enterprise: dict[str, Any], installer: KubeDeploy, kubes: dict[str, Kube]
) -> None:
    k = kubes[DOWNSTREAM]
    ns = "spire-downstream-agents"
    (pod,) = k.core.list_namespaced_pod(
        ns, label_selector="app.kubernetes.io/name=downstream-agent-1"
    ).items
    k.core.delete_namespaced_pod(pod.metadata.name, ns)
    k.wait("the agent pod replaced", lambda: any(
        p.metadata.uid != pod.metadata.uid and p.status.phase == "Running"
        for p in k.core.list_namespaced_pod(
            ns, label_selector="app.kubernetes.io/name=downstream-agent-1").items), timeout=120)
    report = _wait_green(installer)
    assert report["ok"], [c for c in report["checks"] if not c["ok"]]


def test_the_upstream_server_restarted_keeps_its_entries_and_ca(
    enterprise: dict[str, Any], installer: KubeDeploy, kubes: dict[str, Kube]
) -> None:
    from spire_fabric.runtime.kubernetes import KubernetesDeployment

    def snapshot() -> tuple[set[str], set[bytes]]:
        with KubernetesDeployment.open(installer.state_dir) as d, \
                d.server("spire-upstream-server") as api:  # fmt: skip
            entries = {e.id for e in api.list_entries()}
            cas = {a.certificate.fingerprint(__import__("cryptography.hazmat.primitives.hashes",
                   fromlist=["SHA256"]).SHA256()) for a in api.get_bundle().x509_authorities}
        return entries, cas

    entries, cas = snapshot()
    assert entries
    k = kubes[UPSTREAM]
    old = k.core.read_namespaced_pod("spire-upstream-server-0", "spire-upstream")
    k.core.delete_namespaced_pod("spire-upstream-server-0", "spire-upstream",
                                 grace_period_seconds=0)  # fmt: skip

    def back() -> bool:
        p = k.core.read_namespaced_pod("spire-upstream-server-0", "spire-upstream")
        return p.metadata.uid != old.metadata.uid and all(
            cs.ready for cs in p.status.container_statuses or [])

    k.wait("spire-upstream-server-0 back and ready", back, timeout=180)
    after_entries, after_cas = snapshot()
    assert after_entries == entries
    assert after_cas == cas
    report = _wait_green(installer)
    assert report["ok"], [c for c in report["checks"] if not c["ok"]]


def test_down_leaves_the_clusters_as_they_were(
    enterprise: dict[str, Any], installer: KubeDeploy, kubes: dict[str, Kube]
) -> None:
    started = time.monotonic()
    installer.ok("down", "--purge", timeout=600)
    print(f"\nkubernetes enterprise: up to green verify {enterprise['up_seconds']:.0f}s, "
          f"down to clean {time.monotonic() - started:.0f}s")
    after = object_lists(kubes)
    for cluster in (UPSTREAM, DOWNSTREAM):
        added = sorted(set(after[cluster]) - set(enterprise["before"][cluster]))
        removed = sorted(set(enterprise["before"][cluster]) - set(after[cluster]))
        assert not added and not removed, f"{cluster}: added {added}, removed {removed}"
