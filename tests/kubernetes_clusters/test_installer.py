"""`deploy --target kubernetes` on the two real test clusters: SPIRE in real pods (k8s_psat
agents, the k8s workload attestor, controller-manager registrations, MariaDB), verified by
the same checks as the local target, then healed, re-applied and removed.

One enterprise deployment for the module (it takes a few minutes to come up); each test
that breaks something heals it and asserts it did.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

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
                f"`deploy {' '.join(args)}` exited {r.returncode}\n{_red_checks(r.stdout)}"
                f"{r.stdout[-6000:]}\n{r.stderr[-4000:]}"
            )
        return r


def _red_checks(stdout: str) -> str:
    """The failed checks of a `verify --output json` (whose tail alone, in a long report,
    need not include them: a CI run showed only green ones), else nothing."""
    try:
        checks = json.loads(stdout)["checks"]
    except (ValueError, KeyError, TypeError):
        return ""
    red = [c for c in checks if not c.get("ok")]
    return f"red checks: {json.dumps(red, indent=1)}\n" if red else ""


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
    from kube_harness import installer_args, load_installer_images

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
        # the authority checks hold on this target too (the agents' own SVIDs stay in
        # their pods: with nothing tainted no claim about them is needed)
        "authority-expiry:spire-upstream-server",
        "authority-svids:spire-downstream-server",
        "authority-tainted:spire-downstream-server",
        "authority-copy:spire-downstream-server->enterprise-root.org",
        "authority-copy:spire-upstream-server->downstream.example.org",
        # issue 24: every server, agent and workload scraped and up, rules loaded, none firing
        "monitoring-targets",
        "monitoring-alerts",
    ):
        assert expected in ids, f"no check {expected}"
    assert all(c["ok"] for c in report["checks"]), [c for c in report["checks"] if not c["ok"]]
    datastore = next(c for c in report["checks"] if c["id"] == "datastore:spire-upstream-server")
    assert datastore["detail"].startswith("MySql"), datastore


AGENT_NAMESPACES = {UPSTREAM: "spire-upstream-agents", DOWNSTREAM: "spire-downstream-agents"}
SERVICE_ACCOUNT_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


def agent_process_uids() -> list[int]:
    """The uid of every spire-agent of the test clusters: their nodes share this machine's
    PID namespace, and only an agent pod runs ``-config /run/spire/config/agent.conf``."""
    uids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            status = (proc / "status").read_text()
        except OSError:  # not a process, or gone meanwhile
            continue
        if argv[0].endswith(b"spire-agent") and b"/run/spire/config/agent.conf" in argv:
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            uids.append(int(uid_line.split()[1]))
    return uids


def agent_may_get_nodes(kube: Kube, ns: str, subresource: str) -> bool:
    """A SubjectAccessReview as the agents' service account: may it get nodes/<sub>?"""
    from kubernetes import client

    spec = client.V1SubjectAccessReviewSpec(
        user=f"system:serviceaccount:{ns}:spire-agent",
        groups=["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
        resource_attributes=client.V1ResourceAttributes(
            verb="get", resource="nodes", subresource=subresource),
    )  # fmt: skip
    review = client.AuthorizationV1Api(kube.api).create_subject_access_review(
        client.V1SubjectAccessReview(spec=spec))  # fmt: skip
    return bool(review.status.allowed)


def test_the_agents_attest_as_their_own_uid_against_a_verified_kubelet_with_nodes_pods(
    enterprise: dict[str, Any], kubes: dict[str, Kube]
) -> None:
    """The green verify fetched every workload's SVID through the agents' k8s attestor; here
    is the posture it did that under: the kubelet's certificate verified against the
    cluster CA, the agents' service account granted nodes/pods and denied nodes/proxy, and
    every agent process running as its own non-root uid with no capability."""
    from spire_fabric.render.kubernetes._common import AGENT_UID

    assert enterprise["up"].returncode == 0
    for name, ns in AGENT_NAMESPACES.items():
        kube = kubes[name]
        confs = [
            cm.data["agent.conf"]
            for cm in kube.core.list_namespaced_config_map(ns).items
            if cm.data and "agent.conf" in cm.data
        ]
        assert confs, f"no agent config in {name}/{ns}"
        for conf in confs:
            assert f'kubelet_ca_path = "{SERVICE_ACCOUNT_CA}"' in conf, conf
            assert "skip_kubelet_verification" not in conf, conf
            assert 'WorkloadAttestor "unix"' not in conf, conf
        sa = f"{ns}/spire-agent"
        assert agent_may_get_nodes(kube, ns, "pods"), f"{sa} may not get nodes/pods in {name}"
        assert not agent_may_get_nodes(kube, ns, "proxy"), f"{sa} may get nodes/proxy in {name}"
        pods = kube.core.list_namespaced_pod(
            ns, label_selector="app.kubernetes.io/component=agent").items
        assert pods and all(p.status.phase == "Running" for p in pods)
    uids = agent_process_uids()
    assert len(uids) == 4, uids  # upstream-agent and downstream-agent-1..3
    assert set(uids) == {AGENT_UID}, uids


def test_mysql_takes_tls_only_with_its_service_name_and_passwords_from_files(
    enterprise: dict[str, Any], kubes: dict[str, Kube]
) -> None:
    """The datastore hardening as the cluster runs it: a plain TCP connection is refused, a
    TLS one is let in, and the certificate MySQL serves verifies for the Service name
    against the datastore CA (the SPIRE server's own connection checks the same, and
    verify's datastore check is green); the password files are root's and MySQL's group's
    alone, no container env holds a password, and the signing CA and MySQL certificate
    Secrets are typed kubernetes.io/tls. The probes run in the MySQL pod against 127.0.0.1:
    the NetworkPolicy admits only the server's pods through the Service (its own test)."""
    from spire_fabric.runtime.kubernetes._clusters import ClusterApi
    from spire_fabric.runtime.kubernetes._pods import exec_in_pod

    k = kubes[UPSTREAM]
    conn = ClusterApi(UPSTREAM, UPSTREAM, k.api)
    ns, host = "spire-upstream", "spire-upstream-mysql.spire-upstream.svc"
    pods = k.core.list_namespaced_pod(
        ns, label_selector="app.kubernetes.io/name=spire-upstream-mysql").items
    pod = next(p.metadata.name for p in pods if p.status.phase == "Running")

    def mariadb(*opts: str) -> Any:
        sql = "SHOW SESSION STATUS LIKE 'Ssl_version'"
        password = '-p"$(cat /run/secrets/mysql/password)"'
        script = (f'mariadb -h 127.0.0.1 --protocol=TCP -u spire {password} '
                  f'{" ".join(opts)} -N -e "{sql}"')  # fmt: skip
        return exec_in_pod(conn, ns, pod, "mysql", ["sh", "-c", script])

    # the same user and password: refused without TLS (MariaDB 10.11 answers 1045 "Access
    # denied" under require_secure_transport; MySQL says "insecure transport"), let in with
    plain = mariadb("--skip-ssl")
    assert plain.returncode != 0, plain.stdout
    assert "ERROR 1045" in plain.stderr or "insecure transport" in plain.stderr, plain.stderr
    tls = mariadb("--ssl", "--ssl-ca=/run/secrets/mysql-tls/ca.crt")
    assert tls.returncode == 0, tls.stderr
    name, version = tls.stdout.split()
    assert name == "Ssl_version" and version.startswith("TLSv1."), tls.stdout
    served = exec_in_pod(conn, ns, pod, "mysql", [
        "sh", "-c", "openssl s_client -starttls mysql -connect 127.0.0.1:3306 "
        f"-CAfile /run/secrets/mysql-tls/ca.crt -verify_hostname {host} "
        "-verify_return_error </dev/null"])  # fmt: skip
    assert served.returncode == 0, served.stdout[-2000:] + served.stderr[-2000:]
    assert "Verify return code: 0 (ok)" in served.stdout, served.stdout[-2000:]
    modes = exec_in_pod(conn, ns, pod, "mysql", ["stat", "-L", "-c", "%n %a %u %g",
                        "/run/secrets/mysql/password", "/run/secrets/mysql/root-password",
                        "/run/secrets/mysql-tls/tls.key"])  # fmt: skip
    assert modes.returncode == 0, modes.stderr
    for line in modes.stdout.splitlines():
        assert line.split()[1:] == ["440", "0", "999"], line
    for kube in kubes.values():
        for dep in kube.apps.list_deployment_for_all_namespaces(
                label_selector="app.kubernetes.io/managed-by=spire-fabric").items:
            for c in dep.spec.template.spec.containers:
                for e in c.env or []:
                    assert e.value_from is None or e.name == "SPIRE_DB_PASSWORD", (dep, e)
                    assert "PASSWORD" not in e.name or e.name.endswith("_FILE"), e.name
    for name in ("spire-upstream-server-upstream-ca", "spire-upstream-mysql-tls"):
        assert k.core.read_namespaced_secret(name, ns).type == "kubernetes.io/tls", name


def test_status_lists_every_component_ready_with_its_svid_expiry(
    enterprise: dict[str, Any], installer: KubeDeploy
) -> None:
    rows = {r["name"]: r for r in json.loads(installer.ok("status", "--output", "json").stdout)}
    expected = {"spire-upstream-server", "spire-downstream-server", "upstream-agent",
                "downstream-agent-1", "downstream-agent-2", "downstream-agent-3",
                "enterprise-api", "data-processor", "security-gateway"}  # fmt: skip
    assert expected <= set(rows), sorted(rows)
    now = time.time()
    for name in sorted(expected):
        row = rows[name]
        assert row["running"] and row["healthy"], row
        # every SPIRE identity has an expiry read from SPIRE, in the future, within its TTL
        assert row["svid_expires_at"] is not None, row
        assert now < row["svid_expires_at"] < now + 7 * 24 * 3600, row
    assert any(r["kind"] == "database" and r["healthy"] for r in rows.values()), rows


def test_the_dashboard_reads_both_clusters_and_their_telemetry(
    enterprise: dict[str, Any], installer: KubeDeploy
) -> None:
    from spire_fabric.dashboard._collect import collect
    from spire_fabric.runtime.kubernetes import KubernetesDeployment

    with KubernetesDeployment.open(installer.state_dir) as d:
        snap = collect(d)
        components = [s.name for s in d.topology.servers] + [a.name for a in d.topology.agents]
    assert not snap.telemetry_errors, snap.telemetry_errors
    for component in components:  # SPIRE's own metrics, scraped through our port-forwards
        names = {sample.name for sample in snap.telemetry.get(component, [])}
        assert any(n.startswith("spire_") for n in names), (component, sorted(names)[:10])
    versions = {v.name: v.version for v in snap.servers}
    assert all(v and v.startswith("1.") for v in versions.values()), versions
    now = time.time()
    for server in snap.servers:  # every page's data, read through the interface
        assert not server.errors and server.ready, (server.name, server.errors)
        assert server.info is not None and server.info.uptime_seconds > 0, server
        assert server.info.entries_count > 0 and server.info.svid_chain, server.info
        assert now < server.info.svid_chain[0].expires_at, server.info
        assert server.bundle is not None and server.x509_state is not None
    assert sorted(a.name or "" for a in snap.agents) == sorted(components[2:])
    assert all(a.healthy for a in snap.agents), snap.agents
    assert len(snap.federation) == 2, snap.federation
    assert all(f.diff is not None and not f.diff for f in snap.federation), snap.federation
    running = {w.name: w for w in snap.workloads
               if w.name in ("enterprise-api", "data-processor", "security-gateway")}  # fmt: skip
    assert all(w.serial and w.expires_at and w.expires_at > now for w in running.values()), \
        running  # fmt: skip
    assert not snap.errors, snap.errors


def test_up_again_changes_nothing(
    enterprise: dict[str, Any], installer: KubeDeploy, kubes: dict[str, Kube]
) -> None:
    plan = installer.run("plan", "--topology", "enterprise", "--output", "json")
    body = json.loads(plan.stdout)
    assert plan.returncode == 0, body["changes"]
    assert body["unchanged"] > 40
    # the plan lists exactly the NodePorts the clusters publish, and no server API one
    listed = {(p["where"], p["port"]) for p in body["published"]}
    live = {
        (svc.metadata.labels["spire-fabric.io/cluster"], port.node_port)
        for k in kubes.values()
        for svc in k.core.list_service_for_all_namespaces(
            label_selector="app.kubernetes.io/managed-by=spire-fabric").items
        for port in svc.spec.ports or []
        if port.node_port
    }  # fmt: skip
    assert listed == live == {
        ("upstream-cluster", 31443), ("downstream-cluster", 32443),
        ("downstream-cluster", 30080),
        ("upstream-cluster", 30090),  # its Prometheus, federated by the downstream one's
    }  # fmt: skip
    again = installer.ok("up", "--topology", "enterprise")
    assert "no changes" in again.stdout


def test_the_authorities_report_on_kubernetes(
    enterprise: dict[str, Any], installer: KubeDeploy
) -> None:
    """`deploy authorities` through the same Deployment interface (servers by port-forward,
    workloads' SVIDs fetched inside their pods, the peers' copies); it says where this
    target cannot see (the agents' own SVIDs stay in their pods)."""
    report = json.loads(installer.ok("authorities", "--output", "json").stdout)
    assert report["target"] == "kubernetes"
    servers = {s["server"]: s for s in report["servers"]}
    assert list(servers) == ["spire-upstream-server", "spire-downstream-server"]
    for s in servers.values():
        assert s["error"] == ""
        # one active X.509 authority per replica: each holds its own keys (the HA server
        # has 2), all under the same intermediate of the Enterprise Root hierarchy
        actives = [a for a in s["authorities"] if (a["kind"], a["slot"]) == ("x509", "active")]
        assert len(actives) == s["replicas"], (s["replicas"], actives)
        assert len({a["authority_id"] for a in actives}) == len(actives), actives
        assert [p["equal"] for p in s["peers"]] == [True]
        assert s["agents"], "ListAgents named no agent"
        for agent in s["agents"]:
            assert agent["authority_id"] == "" and agent["detail"], agent
        for w in s["workloads"]:
            assert w["detail"] == "", w
            assert w["x509_authority_id"] in {a["authority_id"] for a in actives}, w
        assert sum(a["workload_svids"] for a in actives) == len(s["workloads"])
        # the intermediate above them is seen in the chains the pods are served, with its root
        (up,) = s["upstream"]
        for active in actives:
            assert up["subject_key_id"] == active["upstream_authority_subject_key_id"]
        assert up["expires_at"] > time.time() and up["root_expires_at"] > up["expires_at"]
        assert up["root_subject_key_id"] and not up["in_bundle"] and not up["root_tainted"]
    # the services, and the sidecar workloads when the target runs them
    running = {"enterprise-api", "data-processor", "security-gateway",
               *(SIDECAR_WORKLOADS if _sidecars_on() else ())}
    assert {w["workload"] for w in servers["spire-downstream-server"]["workloads"]} == running


def test_the_network_policies_fence_off_what_they_should(
    enterprise: dict[str, Any], kubes: dict[str, Kube], installer: KubeDeploy
) -> None:
    """The rendered NetworkPolicies, enforced by kube-network-policies on every node: each
    refusal follows the same connection from an allowed peer (see _network_policy_checks),
    and verify is green behind them."""
    from kubernetes_clusters import _network_policy_checks as netpol

    up = enterprise["up"]
    assert up.returncode == 0, (up.stdout[-8000:] + up.stderr[-4000:]
                                + "\n".join(netpol.enforcer_log(k) for k in kubes.values()))
    with netpol.outsider_namespace(kubes):
        for check in netpol.CHECKS:
            try:
                check(kubes)
            except AssertionError as err:
                log = "\n".join(netpol.enforcer_log(k) for k in kubes.values())
                raise AssertionError(f"{check.__name__}: {err}\n{log}") from err
    netpol.verifies_green_behind_the_policies(
        lambda: installer.ok("verify", "--output", "json").stdout)


def test_later_commands_need_no_flag_the_settings_are_recorded(
    enterprise: dict[str, Any], installer: KubeDeploy
) -> None:
    """`up` was given the test clusters' kubeconfig, images and socket mode; `plan` with
    nothing but the state directory (not even --target) finds them all: no changes."""
    argv = [sys.executable, "-m", "spire_fabric.deploy", "plan", "--output", "json",
            "--state-dir", str(installer.state_dir)]  # fmt: skip
    plan = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    body = json.loads(plan.stdout)
    assert plan.returncode == 0, body["changes"]
    assert body["target"] == "kubernetes" and body["unchanged"] > 40, body
    # a flag of the other target is refused, naming it, and changes nothing
    refused = installer.run("up", "--port-base", "40000")
    assert refused.returncode != 0
    assert "--port-base does not apply to --target kubernetes" in refused.stderr


def test_an_opaque_signing_ca_secret_of_an_older_up_is_replaced_by_the_tls_one(
    enterprise: dict[str, Any], installer: KubeDeploy, kubes: dict[str, Kube]
) -> None:
    """Secret types are immutable: `up` over a deployment made before the signing CA's
    Secret was typed kubernetes.io/tls replaces it (same data); plan says so first."""
    from kubernetes import client

    k, ns, name = kubes[DOWNSTREAM], "spire-downstream", "spire-downstream-server-upstream-ca"
    live = k.core.read_namespaced_secret(name, ns)
    k.core.delete_namespaced_secret(name, ns)
    k.wait(f"{name} gone", lambda: not any(
        s.metadata.name == name for s in k.core.list_namespaced_secret(ns).items))
    k.core.create_namespaced_secret(ns, client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels=live.metadata.labels),
        type="Opaque", data=live.data))  # fmt: skip
    plan = installer.run("plan", "--topology", "enterprise", "--output", "json")
    notes = json.loads(plan.stdout)["notes"]
    assert any(f"Secret {ns}/{name}" in n and "up replaces it" in n for n in notes), notes
    installer.ok("up", "--topology", "enterprise")
    now = k.core.read_namespaced_secret(name, ns)
    assert now.type == "kubernetes.io/tls" and now.data == live.data
    again = installer.ok("up", "--topology", "enterprise")
    assert "no changes" in again.stdout


def test_rendered_files_applied_in_order_with_kubectl_make_the_same_objects(
    enterprise: dict[str, Any], installer: KubeDeploy, kubes: dict[str, Kube], tmp_path: Path
) -> None:
    """One apply order: `render --state-dir` gives what `up` applied (Secrets filled in from
    the state), and `kubectl apply --server-side` of each cluster's files in name order
    changes no object: the same objects, in the order `up` uses."""
    from kube_harness import kubeconfig_path, kubectl_path

    out = tmp_path / "rendered"
    installer.ok("render", "-o", str(out))
    before = _generations(kubes)
    contexts = {"upstream-cluster": UPSTREAM, "downstream-cluster": DOWNSTREAM}
    kubectl = str(kubectl_path(say=lambda _: None))
    applied = 0
    for cluster_dir in sorted((out / "kubernetes").iterdir()):
        files = sorted(cluster_dir.glob("*.yaml"))
        assert [f.name[:3] for f in files] == sorted(f.name[:3] for f in files)
        for f in files:
            r = subprocess.run(
                [kubectl, "--kubeconfig", str(kubeconfig_path()), "--context",
                 contexts[cluster_dir.name], "apply", "--server-side",
                 "--field-manager=spire-fabric", "-f", str(f)],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert r.returncode == 0, f"{f}: {r.stdout}{r.stderr}"
            applied += r.stdout.count("serverside-applied")
    assert applied > 40
    after = _generations(kubes)
    changed = {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v}
    assert not changed, changed
    plan = installer.run("plan", "--output", "json")
    assert plan.returncode == 0, json.loads(plan.stdout)["changes"]


def _generations(kubes: dict[str, Kube]) -> dict[str, str]:
    """Every object of ours: its generation (bumped by a spec change only), else its
    resourceVersion (objects without a spec that a controller writes)."""
    from spire_fabric.runtime.kubernetes._clusters import ClusterApi
    from spire_fabric.runtime.kubernetes._objects import list_ours

    out = {}
    for name, k in kubes.items():
        for o in list_ours(ClusterApi(name, name, k.api), "enterprise"):
            m = o["metadata"]
            key = f"{name} {o['kind']} {m.get('namespace') or ''}/{m['name']}"
            out[key] = str(m.get("generation") or m.get("resource_version")
                           or m.get("resourceVersion"))  # fmt: skip
    return out


def test_an_api_key_issued_through_the_deployment_reaches_the_gateway(
    enterprise: dict[str, Any], installer: KubeDeploy, kubes: dict[str, Kube]
) -> None:
    """issue-key works on Kubernetes: the key file is the gateway's managed file (a Secret
    the kubelet refreshes in the pod); the gateway reloads it, no restart. Revoked, refused."""
    import ssl
    import urllib.error
    import urllib.request

    from spire_fabric.runtime.kubernetes import KubernetesDeployment

    tool = [sys.executable, "-m", "spire_fabric.examples.security_gateway"]
    where = ["--state-dir", str(installer.state_dir)]
    issued = subprocess.run([*tool, "issue-key", *where, "--client", "kube-test",
                             "--route", "GET /records"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    key = issued.stdout.strip()
    with KubernetesDeployment.open(installer.state_dir) as d:
        address = d.workload_address("security-gateway")
        root = d.root_ca()
        assert address is not None and root is not None
        from cryptography.hazmat.primitives import serialization

        ctx = ssl.create_default_context(
            cadata=root.public_bytes(serialization.Encoding.PEM).decode()
        )
    ctx.check_hostname = False  # the gateway's DNS SAN is its in-cluster name

    def status(k: str) -> int:
        req = urllib.request.Request(f"https://{address.host}:{address.port}/records",
                                     headers={"Authorization": f"Bearer {k}"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    started = time.monotonic()
    while status(key) != 200:  # the kubelet refreshes Secret volumes within about a minute
        assert time.monotonic() - started < 150, "the gateway never took the new key"
        time.sleep(3)
    print(f"key reached the gateway in {time.monotonic() - started:.0f}s")
    listed = subprocess.run([*tool, "list-keys", *where, "--output", "json"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert [c["client"] for c in json.loads(listed.stdout)] == ["kube-test"], listed.stderr
    revoked = subprocess.run([*tool, "revoke-key", *where, "--client", "kube-test"],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    started = time.monotonic()
    while status(key) == 200:
        assert time.monotonic() - started < 150, "the gateway kept a revoked key"
        time.sleep(3)
    # `up` does not take the file away (the Secret's data is another field manager's)
    plan = installer.run("plan", "--output", "json")
    assert plan.returncode == 0, json.loads(plan.stdout)["changes"]


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


def test_prometheus_scrapes_both_clusters_and_evaluates_the_rules_with_none_firing(
    enterprise: dict[str, Any], installer: KubeDeploy
) -> None:
    """Both servers (one through the upstream cluster's Prometheus, federated), every agent
    and every example workload up; the rules `render` writes loaded; no alert firing."""
    from spire_fabric.deploy import attach
    from spire_fabric.render import ALERT_NAMES
    from spire_fabric.runtime.monitoring import (
        active_alerts,
        federated_up,
        loaded_alert_rules,
        scrape_targets,
    )

    with attach("enterprise", state_dir=installer.state_dir) as d:
        urls = d.monitoring_urls()
        assert urls is not None
        prometheus, alertmanager = urls
        direct = {t.component: t.health for t in scrape_targets(prometheus)}
        # `up` of what this Prometheus did not scrape itself: the upstream cluster's
        federated = {c: v for c, v in federated_up(prometheus).items() if c not in direct}
        rules = loaded_alert_rules(prometheus)
        firing = active_alerts(alertmanager)
    assert direct.pop("prometheus-upstream-cluster") == "up"  # the federation target
    assert federated == {"spire-upstream-server": 1.0, "upstream-agent": 1.0}, federated
    assert direct == {name: "up" for name in (
        "prometheus-downstream-cluster", "alertmanager", "spire-downstream-server",
        "downstream-agent-1", "downstream-agent-2", "downstream-agent-3",
        "enterprise-api", "data-processor", "security-gateway",
        # each sidecar on its status port (ghostunnel's and the helper's own metrics)
        *(("inventory/tls", "api-poller/mtls", "catalog/svid") if _sidecars_on() else ()),
    )}, direct  # fmt: skip
    assert sorted(rules) == sorted(ALERT_NAMES)
    assert firing == [], firing


def _agent_container(k: Kube, agent: str) -> tuple[list[str], str]:
    """(ctr command for the node the agent's pod runs on, the agent container's id)."""
    (pod,) = k.core.list_namespaced_pod(
        "spire-downstream-agents", label_selector=f"app.kubernetes.io/name={agent}").items
    node = next(n for n in k.nodes if n["name"] == pod.spec.node_name)
    ctr = ["ctr", "--address", str(Path(node["dir"]) / "containerd" / "containerd.sock"),
           "-n", "k8s.io"]  # fmt: skip
    status = next(cs for cs in pod.status.container_statuses if cs.name == "spire-agent")
    return ctr, status.container_id.removeprefix("containerd://")


@contextlib.contextmanager
def _frozen(k: Kube, agent: str) -> Iterator[None]:
    """The agent's process stopped (SIGSTOP through its node's containerd, as the heal test
    kills containers) until SIGCONT. The kubelet's liveness probe (3 x 10 s) may restart
    the hung agent first: then there is nothing to resume, and that cures it just the same."""
    ctr, cid = _agent_container(k, agent)
    subprocess.run([*ctr, "tasks", "kill", "-s", "SIGSTOP", cid], check=True)
    try:
        yield
    finally:
        subprocess.run([*ctr, "tasks", "kill", "-s", "SIGCONT", cid], capture_output=True)


@contextlib.contextmanager
def _forwarding_refused(k: Kube, ns: str, app: str, component: str,
                        match: Callable[[Any], list[str]]) -> Iterator[None]:
    """Every TCP packet that the node of each of `app`'s pods forwards and that matches
    `match(pod)` (iptables arguments) answered with a reset, as if nothing listened there.
    One rule per pod, first in the FORWARD chain of its node's network namespace, where
    its traffic passes after kube-proxy's translation (pod to pod and to other nodes); the
    kubelet's probes leave from the node itself (OUTPUT) and do not see it. Tagged with
    this test's pid and deleted by the same spec (the namespace goes with `down` anyway)."""
    from spire_fabric.render.kubernetes._common import selector_labels

    selector = ",".join(f"{key}={v}" for key, v in selector_labels(app, component).items())
    pods = k.core.list_namespaced_pod(ns, label_selector=selector).items
    assert pods, f"no pod of {app} in {ns}"
    tag = ["-m", "comment", "--comment", f"spire-fabric-kube-test-{os.getpid()}"]
    rules = [(next(n["netns"] for n in k.nodes if n["name"] == pod.spec.node_name),
              ["FORWARD", "-p", "tcp", *match(pod), *tag, "-j", "REJECT", "--reject-with",
               "tcp-reset"]) for pod in pods]  # fmt: skip
    with contextlib.ExitStack() as undo:
        for netns, spec in rules:
            iptables = ["ip", "netns", "exec", netns, "iptables", "-w", "10"]
            added = subprocess.run([*iptables, "-I", *spec], capture_output=True, text=True)
            assert added.returncode == 0, f"{netns}: {spec}: {added.stderr.strip()}"
            undo.callback(subprocess.run, [*iptables, "-D", *spec], check=True,
                          capture_output=True)  # fmt: skip
        yield


def test_a_frozen_agent_a_blocked_bundle_endpoint_and_a_refused_api_fire_and_resolve(
    enterprise: dict[str, Any], installer: KubeDeploy, kubes: dict[str, Kube]
) -> None:
    """Three faults at once, each undone as soon as its alert is active in Alertmanager's
    API, each resolving once undone (one wait for all keeps the module short), as locally
    (tests/e2e/test_enterprise_up_verify_down.py):

    - downstream-agent-2's process frozen: its telemetry stops answering, SpireAgentDown
      within 90 s;
    - the upstream's bundle endpoint refused from the downstream server's view (its pod's
      connections to the upstream cluster's federation NodePort reset in its node): no
      fetch succeeds for a whole refresh hint, FederatedBundleStale within 120 s;
    - enterprise-api refusing connections to its port (reset in its node) while
      upstream-client calls the gateway through its NodePort: the gateway answers 503,
      GatewayErrors within 60 s.

    Verify is green afterwards (no alert firing), for the tests after this one."""
    from drill.alerts import Fault, GatewayTraffic, fire_and_resolve, wait_for_good_fetch

    from spire_fabric.deploy import attach
    from spire_fabric.topology import bundle_endpoint_url

    k, server = kubes[DOWNSTREAM], "spire-downstream-server"
    with attach("enterprise", state_dir=installer.state_dir) as d:
        urls = d.monitoring_urls()
        assert urls is not None
        t = d.topology
        (fed,) = t.federations_of(server)
        endpoint = urlparse(bundle_endpoint_url(t, fed, "kubernetes"))
        server_ns = t.server(server).kubernetes.namespace  # type: ignore[union-attr]
        api_ns = t.workload("enterprise-api").kubernetes.namespace  # type: ignore[union-attr]

        def to_bundle_endpoint(pod: Any) -> list[str]:
            return ["-s", pod.status.pod_ip, "-d", str(endpoint.hostname),
                    "--dport", str(endpoint.port)]  # fmt: skip

        def to_api(pod: Any) -> list[str]:
            (port,) = (p.container_port for c in pod.spec.containers for p in c.ports or []
                       if p.name == "https")  # fmt: skip
            return ["-d", pod.status.pod_ip, "--dport", str(port)]

        faults = [
            Fault("SpireAgentDown", "downstream-agent-2",
                  lambda: _frozen(k, "downstream-agent-2"), fire_within=90, resolve_within=120),
            Fault("FederatedBundleStale", server, lambda: _forwarding_refused(
                k, server_ns, server, "server", to_bundle_endpoint), fire_within=120),
            Fault("GatewayErrors", "security-gateway", lambda: _forwarding_refused(
                k, api_ns, "enterprise-api", "workload", to_api), fire_within=60),
        ]  # fmt: skip
        wait_for_good_fetch(urls[0], server)
        with GatewayTraffic(d) as traffic:
            fire_and_resolve(urls[1], faults)
    assert traffic.statuses[503] > 0 and traffic.statuses[200] > 0, traffic.statuses
    report = _wait_green(installer)
    assert report["ok"], [c for c in report["checks"] if not c["ok"]]


def test_the_api_keeps_its_records_and_results_when_its_pod_is_replaced(
    enterprise: dict[str, Any], installer: KubeDeploy, kubes: dict[str, Kube]
) -> None:
    """enterprise-api's SQLite store is on its volume claim: a new pod (on the claim) has
    the results data-processor posted to the old one."""
    from spire_fabric.runtime.kubernetes._clusters import ClusterApi
    from spire_fabric.runtime.kubernetes._pods import exec_in_pod

    k = kubes[DOWNSTREAM]
    conn = ClusterApi(DOWNSTREAM, DOWNSTREAM, k.api)
    ns, selector = "downstream-workloads", "app.kubernetes.io/name=enterprise-api"
    count = ("import sqlite3; db = sqlite3.connect('file:enterprise-api.sqlite3?mode=ro', "
             "uri=True); print(*(db.execute(f'select count(*) from {t}').fetchone()[0] "
             "for t in ('records', 'results')))")  # fmt: skip

    def ready_pod() -> Any:
        pods = [p for p in k.core.list_namespaced_pod(ns, label_selector=selector).items
                if p.metadata.deletion_timestamp is None and p.status.phase == "Running"
                and p.status.container_statuses
                and all(cs.ready for cs in p.status.container_statuses)]  # fmt: skip
        return pods[0] if pods else None

    def counts(pod: Any) -> tuple[int, int]:
        r = exec_in_pod(conn, ns, pod.metadata.name, "enterprise-api", ["python3", "-c", count])
        assert r.returncode == 0, r.stderr
        records, results = r.stdout.split()
        return int(records), int(results)

    old = ready_pod()
    k.wait("data-processor posted a result", lambda: counts(old)[1] > 0, timeout=120)
    before = counts(old)
    k.core.delete_namespaced_pod(old.metadata.name, ns)
    k.wait("a new enterprise-api pod ready", lambda: (p := ready_pod()) is not None
           and p.metadata.uid != old.metadata.uid, timeout=180)  # fmt: skip
    new = ready_pod()
    assert new.spec.volumes and any(
        v.persistent_volume_claim and v.persistent_volume_claim.claim_name == "enterprise-api-data"
        for v in new.spec.volumes)  # fmt: skip
    after = counts(new)
    assert after[0] == before[0] and after[1] >= before[1] > 0, (before, after)
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
        # A new pod has no container statuses at first: all() of nothing is
        # True, so readiness needs Running and at least one status.
        p = k.core.read_namespaced_pod("spire-upstream-server-0", "spire-upstream")
        statuses = p.status.container_statuses or []
        return (p.metadata.uid != old.metadata.uid and p.status.phase == "Running"
                and bool(statuses) and all(cs.ready for cs in statuses))

    k.wait("spire-upstream-server-0 back and ready", back, timeout=180)
    after_entries, after_cas = snapshot()
    assert after_entries == entries
    assert after_cas == cas
    report = _wait_green(installer)
    assert report["ok"], [c for c in report["checks"] if not c["ok"]]


def test_up_heals_a_node_whose_containers_were_all_killed(
    enterprise: dict[str, Any], installer: KubeDeploy, kubes: dict[str, Kube]
) -> None:
    """Every container on the downstream server's node (pause sandboxes included) killed
    through that node's own containerd, as a crashed node runtime would leave it; `up`
    waits for the kubelet to bring the pods back and ends in a green verify."""
    k = kubes[DOWNSTREAM]
    server = k.core.read_namespaced_pod("spire-downstream-server-0", "spire-downstream")
    node = next(n for n in k.nodes if n["name"] == server.spec.node_name)
    before = {p.metadata.uid: sum(cs.restart_count for cs in p.status.container_statuses or [])
              for p in k.core.list_pod_for_all_namespaces(
                  field_selector=f"spec.nodeName={node['name']}").items}
    ctr = ["ctr", "--address", str(Path(node["dir"]) / "containerd" / "containerd.sock"),
           "-n", "k8s.io"]
    ids = subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True, text=True,
                         check=True).stdout.split()
    assert len(ids) > 4, f"{node['name']} runs only {ids}"
    for cid in ids:
        subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", cid], capture_output=True)

    def noticed() -> bool:  # the kubelet restarted what was killed (or replaced it)
        pods = k.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={node['name']}").items
        return any(p.metadata.uid not in before or sum(
            cs.restart_count for cs in p.status.container_statuses or []) > before[p.metadata.uid]
            for p in pods)

    k.wait(f"the kubelet of {node['name']} notices its containers died", noticed, timeout=120)
    up = installer.ok("up", "--topology", "enterprise", timeout=900)
    assert " 0 failed" in up.stdout, up.stdout[-4000:]
    server = k.core.read_namespaced_pod("spire-downstream-server-0", "spire-downstream")
    assert server.status.container_statuses[0].restart_count > 0 or \
        server.metadata.uid not in before  # fmt: skip


DRILL_REPORT = Path("/tmp/rotk8s-drill.json")


def _active(report: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for s in report["servers"]:
        assert s["error"] == "", s
        for a in s["authorities"]:
            if a["slot"] == "active":
                out.setdefault((s["server"], a["kind"]), []).append(a["authority_id"])
    return out


# -- sidecars (issue 21 on the clusters) --------------------------------------------------

def _sidecars_on() -> bool:
    from spire_fabric.topology import sidecars_on_kubernetes

    return sidecars_on_kubernetes()


# Said, never silent: with the switch off the target leaves sidecar workloads out (and `plan`
# and `up` say so), so there is nothing of theirs to test on the clusters.
SIDECARS = pytest.mark.skipif(not _sidecars_on(), reason=(
    "the Kubernetes target runs no sidecars with the switch off "
    "(spire_fabric.topology._kubernetes_only.KUBERNETES_SIDECARS; "
    "SPIRE_FABRIC_KUBERNETES_SIDECARS=1 turns it on)"))
SIDECAR_WORKLOADS = ("inventory", "api-poller", "catalog")


@SIDECARS
def test_sidecars_run_in_their_pods_and_verify_checks_them(
    enterprise: dict[str, Any], installer: KubeDeploy
) -> None:
    """The allow list admits the API and the gateway and refuses a stranger, a forged
    cross-trust-domain SVID of an allowed ID is refused, the app's plain port does not
    answer from another pod while the sidecar's does, catalog's files are the agent's
    current SVID with modes 0644/0600/0644; `status` shows each sidecar with its own SVID
    expiry."""
    report = json.loads(installer.ok("verify", "--output", "json").stdout)
    checks = {c["id"]: c for c in report["checks"]}
    expected = [
        "sidecar-allowed:enterprise-api->inventory/tls",
        "sidecar-allowed:security-gateway->inventory/tls",
        "sidecar-refused:data-processor->inventory/tls",
        "sidecar-forged:enterprise-api->inventory/tls",
        "sidecar-loopback-only:inventory/tls",
        "sidecar-files:catalog/svid",
        "workload-health:inventory",
        "workload-health:catalog",
    ]
    missing = [c for c in expected if c not in checks]
    assert not missing, (missing, sorted(checks))
    bad = [checks[c] for c in expected if not checks[c]["ok"]]
    assert not bad, bad
    assert "refused" in checks["sidecar-loopback-only:inventory/tls"]["detail"]
    assert "modes 0644/0600/0644" in checks["sidecar-files:catalog/svid"]["detail"]
    rows = {r["name"]: r for r in json.loads(installer.ok("status", "--output", "json").stdout)}
    now = time.time()
    for name in ("inventory/tls", "api-poller/mtls", "catalog/svid"):
        row = rows.get(name)
        assert row is not None and row["kind"] == "sidecar", sorted(rows)
        assert row["running"] and row["healthy"], row
        assert row["svid_expires_at"] is not None and now < row["svid_expires_at"], row
    for name in SIDECAR_WORKLOADS:
        assert rows[name]["healthy"], rows[name]


@SIDECARS
def test_the_plain_port_is_closed_to_another_pod_and_the_files_are_the_agents(
    enterprise: dict[str, Any], installer: KubeDeploy
) -> None:
    """The same two facts read directly, with their controls: from enterprise-api's pod the
    sidecar's port on inventory's pod IP answers and the app's port does not; inside
    catalog's pod the helper's files are the chain and key the agent serves catalog."""
    from spire_fabric.deploy import attach
    from spire_fabric.identity import X509Svid

    with attach("enterprise", state_dir=installer.state_dir) as d:
        probe = d.plain_port_from_peer("inventory", 30446)  # type: ignore[attr-defined]
        assert probe.peer == "enterprise-api", probe
        assert probe.results[8443] == "open", probe
        assert probe.results[30446] != "open", probe
        files = d.sidecar_files("catalog")  # type: ignore[attr-defined]
        assert {n: m for n, (_, m) in files.items() if n.startswith("svid")} == {
            "svid.pem": 0o644, "svid_key.pem": 0o600, "svid_bundle.pem": 0o644}, files.keys()
        on_disk = X509Svid.parse_pem(files["svid.pem"][0], files["svid_key.pem"][0])
        served = next(s for s in d.x509_context("catalog").svids
                      if str(s.spiffe_id) == d.topology.workload("catalog").spiffe_id)
        assert on_disk.cert_chain == served.cert_chain


ROTATION_TTL = "20s"
# the SVIDs a sidecar path carries: the three sidecar workloads' and the API's (inventory's
# caller through the SDK); the test's own callers (gateway, upstream-client) keep theirs
ROTATING = ("enterprise-api", *SIDECAR_WORKLOADS)


def _in_pod(d: Any, workload: str, script: str) -> str:
    """stdout of ``sh -c script`` in the workload's app container."""
    from spire_fabric.render.kubernetes import selector_labels
    from spire_fabric.runtime.kubernetes._pods import exec_in_pod, running_pod

    k = d.topology.workload(workload).kubernetes
    conn = d.clusters[d.access.workload_cluster(workload)]
    pod = running_pod(conn, k.namespace, selector_labels(workload, "workload"))
    res = exec_in_pod(conn, k.namespace, pod, workload, ["sh", "-c", script], timeout=30)
    assert res.returncode == 0, (workload, script, res.stderr)
    return res.stdout.strip()


# where each nginx writes its master pid: inventory's prefix is its working directory
# (/tmp), catalog's pid file is in the SVID emptyDir the helper signals it through
NGINX_PID_FILES = {"inventory": "/tmp/nginx.pid", "catalog": "/run/spire-fabric/svid/nginx.pid"}


def _nginx(d: Any, workload: str) -> tuple[int, set[int]]:
    """(master pid, worker pids) of the workload's nginx, read in its pod."""
    master = int(_in_pod(d, workload, f"cat {NGINX_PID_FILES[workload]}"))
    workers = _in_pod(d, workload, f"cat /proc/{master}/task/{master}/children")
    return master, {int(p) for p in workers.split()}


def _pods_and_restarts(d: Any) -> dict[str, tuple[str, dict[str, int]]]:
    """Per sidecar workload: its pod's uid and each container's restart count."""
    from spire_fabric.render.kubernetes import selector_labels
    from spire_fabric.runtime.kubernetes._pods import running_pod

    out = {}
    for w in SIDECAR_WORKLOADS:
        k = d.topology.workload(w).kubernetes
        conn = d.clusters[d.access.workload_cluster(w)]
        pod = conn.core.read_namespaced_pod(
            running_pod(conn, k.namespace, selector_labels(w, "workload")), k.namespace)
        out[w] = (pod.metadata.uid, {cs.name: cs.restart_count
                                     for cs in pod.status.container_statuses})
    return out


def _lifetime(cert: Any) -> float:
    return float((cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds())


def _short_lived_everywhere(d: Any) -> bool:
    """Every rotating SVID, as the agent serves it and as the sidecars present or wrote it,
    is a short one (the entries' new TTL reached the agents and the sidecars)."""
    from cryptography import x509

    from spire_fabric.runtime.kubernetes._sidecars import sidecar_facts

    for w in ROTATING:
        want = d.topology.workload(w).spiffe_id
        svid = next(s for s in d.x509_context(w).svids if str(s.spiffe_id) == want)
        if _lifetime(svid.leaf) > 60:
            return False
    presented = sidecar_facts(d.clusters, d.topology, "inventory").presented
    written = sidecar_facts(d.clusters, d.topology, "catalog").files.get("svid.pem")
    if presented is None or written is None:
        return False
    return (_lifetime(x509.load_der_x509_certificate(presented)) <= 60
            and _lifetime(x509.load_pem_x509_certificate(written[0])) <= 60)


@SIDECARS
def test_traffic_through_every_sidecar_crosses_two_rotations_with_zero_failures(
    enterprise: dict[str, Any], installer: KubeDeploy, tmp_path: Path
) -> None:
    """Issue 21 item 5 on the clusters, with the local test's traffic (drill.sidecar_load:
    client sidecar, server sidecar directly and through the API, catalog's nginx with the
    helper's files, new connections and keep-alive): 20 s X.509-SVIDs for the API and the
    three sidecar workloads, traffic until every path crossed two rotations and outlived
    the first certificate it used. No request fails; neither nginx restarts (same master);
    inventory's is not even reloaded, catalog's is (new workers, same master); no pod is
    replaced and no container restarts; api-poller's own calls through its sidecar all
    succeed. Then the preset's TTLs come back."""
    from drill.sidecar_load import SidecarLoad

    from spire_fabric.deploy import attach
    from spire_fabric.topology import dump_topology, preset

    doc = yaml.safe_load(dump_topology(preset("enterprise")))
    for w in doc["workloads"]:
        if w["name"] in ROTATING:
            w["x509_svid_ttl"] = ROTATION_TTL
    path = tmp_path / "enterprise-short.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    started = time.monotonic()
    # no verify here: its one read of each SVID would outlive a 20 s SVID on this target
    # (each read is an exec); the claim is the traffic's, and `up` of the preset below verifies
    installer.ok("up", "--topology", str(path), "--no-verify")
    try:
        with attach("enterprise", state_dir=installer.state_dir) as d:
            deadline = time.monotonic() + 120
            while not _short_lived_everywhere(d):
                assert time.monotonic() < deadline, "the 20 s SVIDs never reached the pods"
                time.sleep(2)
            masters = {w: _nginx(d, w) for w in NGINX_PID_FILES}
            pods = _pods_and_restarts(d)
            from drill.load import workload_log

            poller_before = len(workload_log(d, "api-poller"))
            catalog_workers = set(masters["catalog"][1])
            load = SidecarLoad(d, pause=0.05, warmup=120)
            load.start()
            t0 = time.monotonic()
            try:
                until = t0 + 240
                while time.monotonic() < until:
                    catalog_workers |= _nginx(d, "catalog")[1]
                    if all(n >= 2 for n in load.rotations().values()):
                        break
                    time.sleep(1)
                past = max(load.first_expiry().values(), default=0.0) + 1
                while time.time() < past and time.monotonic() < until + 30:
                    catalog_workers |= _nginx(d, "catalog")[1]
                    time.sleep(1)
            finally:
                report = load.stop()
            ended = time.time()
            catalog_workers |= _nginx(d, "catalog")[1]
            poller = workload_log(d, "api-poller")[poller_before:]
            calls = [line for line in poller.splitlines() if " -> " in line]
            failed_calls = [line for line in calls if " -> 200 in " not in line]
            print(f"\nsidecar rotation on kubernetes: {report.summary()}; rotations per path "
                  f"{load.rotations()}; api-poller calls {len(calls)} failed "
                  f"{len(failed_calls)}; catalog nginx workers seen {len(catalog_workers)}; "
                  f"traffic {time.monotonic() - t0:.1f} s, test {time.monotonic() - started:.0f} s")
            assert all(n >= 2 for n in load.rotations().values()), load.serials
            expired = load.first_expiry()
            assert set(expired) == set(load.rotations())
            assert all(at < ended for at in expired.values()), (expired, ended)
            assert report.failures == 0, report.reasons()
            assert all(f.requests >= 20 for f in report.flows.values()), report.summary()
            assert calls and not failed_calls, failed_calls[:5] or poller[-2000:]
            after = {w: _nginx(d, w) for w in NGINX_PID_FILES}
            assert {w: m for w, (m, _) in after.items()} == {w: m for w, (m, _) in masters.items()}
            assert after["inventory"][1] == masters["inventory"][1]  # not even reloaded
            assert len(catalog_workers - masters["catalog"][1]) >= 2, catalog_workers
            assert _pods_and_restarts(d) == pods
    finally:
        installer.ok("up", "--topology", "enterprise")


def test_key_compromise_drill_under_load_fails_no_request(
    enterprise: dict[str, Any], installer: KubeDeploy
) -> None:
    """Issue 22 on the clusters, the local drill's sequence and checks
    (tests/e2e/test_key_compromise_drill.py) through `deploy rotate` as a user runs it:
    under continuous traffic (drill.load: external client → gateway on its NodePort,
    upstream-client over mTLS to the gateway and the API, data-processor's JWT-SVID posts,
    cross-domain JWT at the gateway, and the real data-processor's own cycles), X.509 and
    JWT of both servers rotated and revoked, then the Enterprise Root. No request fails;
    verify is green; one new active authority per kind; no revoked key or root in any
    bundle or federated copy; what was kept from before (a JWT-SVID of each revoked key, an
    X.509-SVID of each trust domain under the revoked root) is refused by both trust
    domains' views (SDK and go-spiffe) and by the running services, fresh ones accepted.
    Step times, the drill's time and the counts go to the output and /tmp/rotk8s-drill.json.
    Runs after the tests that read the original authorities."""
    from drill.load import (
        DRILL_STEPS,
        PROCESSOR,
        TrafficLoad,
        last_cycle,
        processor_cycle_work,
        processor_cycles,
        workload_log,
    )
    from drill.verdicts import (
        assert_kept_refused_and_fresh_accepted,
        assert_nothing_revoked_is_held,
        keep_accepted,
    )

    from spire_fabric.deploy import attach

    before = json.loads(installer.ok("authorities", "--output", "json").stdout)
    with attach("enterprise", state_dir=installer.state_dir) as d:
        old_root = d.root_ca()
        assert old_root is not None
        kept = keep_accepted(d)  # with the positive control

        # probe pods and execs make each SVID fetch take seconds here: a slower pace
        load = TrafficLoad(d, pause=0.2, warmup=240)
        warm = time.monotonic()
        load.start()
        warmup_seconds = time.monotonic() - warm
        first_cycle = last_cycle(workload_log(d, PROCESSOR))
        started = time.monotonic()
        steps: list[dict[str, Any]] = []
        stopped_by: BaseException | None = None  # reported with the counts, then raised
        try:
            for step in DRILL_STEPS:
                t0 = time.monotonic()
                out = installer.ok("rotate", *step, "--output", "json", "--wait", "300",
                                   timeout=1500)  # fmt: skip
                result = json.loads(out.stdout)
                steps.append({"rotate": " ".join(step), "seconds": round(time.monotonic() - t0, 1),
                              "steps": {s["name"]: round(s["seconds"], 1) for s in result["steps"]},
                              "outcomes": {s["name"]: s["outcome"] for s in result["steps"]}})
                print(f"drill: rotate {steps[-1]['rotate']}: {steps[-1]['seconds']}s "
                      f"{steps[-1]['steps']}", flush=True)  # fmt: skip
                assert "forced" not in steps[-1]["outcomes"].values(), steps[-1]
        except AssertionError as err:
            stopped_by = err
        finally:
            report = load.stop()
        drill_seconds = time.monotonic() - started
        log = workload_log(d, PROCESSOR)
        cycles, failed_cycles = processor_cycles(log, first_cycle)
        summary = {"target": "kubernetes", "load_warmup_s": round(warmup_seconds, 1),
                   "drill_seconds": round(drill_seconds, 1), "rotations": steps,
                   "load": report.to_json(),
                   "processor_cycles": {"all": cycles, "failed": failed_cycles},
                   "stopped_by": str(stopped_by)[-3000:] if stopped_by else None}  # fmt: skip
        DRILL_REPORT.write_text(json.dumps(summary, indent=2))
        print(f"drill on kubernetes: {drill_seconds:.1f}s for {len(DRILL_STEPS)} rotations; load: "
              f"{report.summary()}; data-processor cycles {cycles}, failed {failed_cycles}")
        if stopped_by is not None:
            raise stopped_by

        # 0 failed requests, out of enough for that to mean something
        assert report.failures == 0, report.reasons()
        assert failed_cycles == [], failed_cycles
        # data-processor kept cycling: each cycle is its 5 s interval plus its own requests,
        # so the cycles cover the drill but for 3 intervals, and none took longer than an
        # interval (a processor that falls behind or hangs on a request shows here)
        work = processor_cycle_work(log, first_cycle)
        assert len(work) == cycles, (len(work), cycles)
        assert max(work, default=0.0) < 5, max(work)
        assert cycles * 5 + sum(work) >= drill_seconds - 15, (cycles, sum(work), drill_seconds)
        for flow, count in report.flows.items():
            assert count.requests >= 10, (flow, report.summary())
        verified = installer.run("verify", "--output", "json")
        assert verified.returncode == 0, [
            c for c in json.loads(verified.stdout)["checks"] if not c["ok"]]

        # one new active authority per kind on each replica of each server (a replica holds
        # its own keys: the downstream server has 2), none of them an old one; nothing
        # revoked held anywhere
        after = _active(json.loads(installer.ok("authorities", "--output", "json").stdout))
        old = _active(before)
        replicas = {s["server"]: s["replicas"] for s in before["servers"]}
        assert set(after) == set(old), (old, after)
        for key, ids in after.items():
            assert len(ids) == replicas[key[0]] and not set(ids) & set(old[key]), (
                key, old[key], ids)
        revoked = {i for s in ("spire-downstream-server", "spire-upstream-server")
                   for i in old[(s, "jwt")]}  # fmt: skip
        assert_nothing_revoked_is_held(d, revoked, old_root)
        # kept credentials refused by both trust domains' views and the running services,
        # fresh ones accepted
        assert_kept_refused_and_fresh_accepted(d, kept)


# Issue 23's failover drills on the downstream server's 2 replicas, the last test before
# `down`: drill (c) leaves the servers with the audit log off, and (d) restarts MariaDB.
from kubernetes_clusters.failover_drills import (  # noqa: E402
    test_server_failover_drills_under_load as test_server_failover_drills_under_load,
)


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
