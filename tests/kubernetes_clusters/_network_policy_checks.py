"""The rendered NetworkPolicies, enforced on the real test clusters (kube-network-policies,
see tests/kube_harness/_netpol.py): what they fence off is really refused, and the whole
enterprise deployment still verifies green behind them.

Every refusal is paired with the same connection from a peer the policies allow, made
first: a refusal then cannot come from a wrong address, a pod not ready or DNS, only from
the policy (without the policies every "refused" below would be "open").

The checks run on test_installer.py's enterprise deployment (one bring-up for both), from
its test_the_network_policies_fence_off_what_they_should.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes_clusters._kube import DOWNSTREAM, PYTHON_IMAGE, UPSTREAM, Kube

OUTSIDER_NS = "sfk-netpol-outsider"  # a namespace of no component: agents' or anyone's

# Prints one word: open (TCP connected), refused (RST), timeout (dropped), or nodns.
CONNECT = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    addr = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
except OSError:
    print("nodns"); raise SystemExit
try:
    socket.create_connection(addr, timeout=6).close()
    print("open")
except ConnectionRefusedError:
    print("refused")
except OSError:
    print("timeout")
"""

# A restricted-compliant pod (the workloads' namespace enforces Pod Security "restricted"
# on clusters with the CSI driver).
RESTRICTED_POD = {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                      "seccompProfile": {"type": "RuntimeDefault"}}}
RESTRICTED_CONTAINER = {"securityContext": {"allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}}}


def _from_new_pod(k: Kube, ns: str, name: str, host: str, port: int,
                  labels: dict[str, str] | None = None) -> str:  # fmt: skip
    """The word of CONNECT from a new pod in ``ns`` with no labels any policy allows (or
    with ``labels``, to pass for a peer that is allowed)."""
    phase, logs = k.run(ns, name, PYTHON_IMAGE, ["python3", "-c", CONNECT, host, str(port)],
                        spec_extra=RESTRICTED_POD, container_extra=RESTRICTED_CONTAINER,
                        timeout=120, labels=labels)  # fmt: skip
    k.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
    assert phase == "Succeeded", logs
    return logs.strip().splitlines()[-1]


def _from_pod_of(k: Kube, ns: str, app: str, container: str, host: str, port: int) -> str:
    """The word of CONNECT from inside a running pod of component ``app``."""
    from spire_fabric.runtime.kubernetes._clusters import ClusterApi
    from spire_fabric.runtime.kubernetes._pods import exec_in_pod

    pods = k.core.list_namespaced_pod(ns, label_selector=f"app.kubernetes.io/name={app}").items
    running = [p for p in pods if p.status.phase == "Running"]
    assert running, f"no running pod of {app} in {ns}"
    conn = ClusterApi(k.name, k.name, k.api)
    r = exec_in_pod(conn, ns, running[0].metadata.name, container,
                    ["python3", "-c", CONNECT, host, str(port)])  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def enforcer_log(k: Kube, lines: int = 12) -> str:
    """What the enforcer said lately on each node that is not an accepted packet (its
    drops with the packet they judged, and any error): the first place to look when a
    connection here is refused that the policies allow, or the other way round."""
    out = []
    pods = k.core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-network-policies")
    for pod in pods.items:
        log = k.core.read_namespaced_pod_log(pod.metadata.name, "kube-system", tail_lines=4000)
        kept, last_packet = [], ""
        for line in log.splitlines():
            if "Evaluating packet" in line:
                last_packet = line
            elif "allowed=false" in line or "rror" in line:
                kept += [last_packet, line] if last_packet else [line]
                last_packet = ""
        out.append(f"--- {k.name} {pod.spec.node_name}:\n" + "\n".join(kept[-lines:]))
    return "\n".join(out)


@contextlib.contextmanager
def outsider_namespace(kubes: dict[str, Kube]) -> Iterator[None]:
    """OUTSIDER_NS in both clusters for the checks' probe pods, gone again afterwards (the
    installer's later `down` test compares every object with what was there before)."""
    for k in kubes.values():
        k.fresh_namespace(OUTSIDER_NS)
    try:
        yield
    finally:
        for k in kubes.values():
            k.core.delete_namespace(OUTSIDER_NS, grace_period_seconds=0)


def policies_in_place_and_enforced_by_every_node(kubes: dict[str, Kube]) -> None:
    from kubernetes import client

    for cluster, namespaces in ((UPSTREAM, ("spire-upstream", "spire-upstream-agents",
                                            "spire-monitoring")),
                                (DOWNSTREAM, ("spire-downstream", "spire-downstream-agents",
                                              "downstream-workloads",
                                              "spire-monitoring"))):  # fmt: skip
        k = kubes[cluster]
        net = client.NetworkingV1Api(k.api)
        for ns in namespaces:
            names = {p.metadata.name for p in net.list_namespaced_network_policy(ns).items}
            assert "default-deny-ingress" in names, (cluster, ns, names)
        ds = k.apps.read_namespaced_daemon_set("kube-network-policies", "kube-system")
        assert ds.status.number_ready == len(k.nodes), ds.status


def server_api_only_from_its_agents_while_the_bundle_endpoint_answers_anyone(
    kubes: dict[str, Kube],
) -> None:
    k = kubes[UPSTREAM]
    server = "spire-upstream-server.spire-upstream.svc"
    allowed = _from_pod_of(k, "spire-upstream-agents", "upstream-agent", "spire-agent",
                           server, 8081)  # fmt: skip
    assert allowed == "open", "the agent's own way to its server is closed"
    assert _from_new_pod(k, OUTSIDER_NS, "api-from-outsider", server, 8081) in (
        "timeout", "refused")
    # a pod in the agents' namespace that is not an agent is refused as well
    assert _from_new_pod(k, "spire-upstream-agents", "api-from-agents-ns", server, 8081) in (
        "timeout", "refused")
    assert _from_new_pod(k, OUTSIDER_NS, "bundle-from-outsider", server, 8443) == "open"


def mysql_only_from_its_server(kubes: dict[str, Kube]) -> None:
    k = kubes[DOWNSTREAM]
    mysql = "spire-downstream-mysql.spire-downstream.svc"
    allowed = _from_pod_of(k, "spire-downstream", "spire-downstream-server", "spire-server",
                           mysql, 3306)  # fmt: skip
    assert allowed == "open", "the server's own way to its database is closed"
    assert _from_new_pod(k, OUTSIDER_NS, "mysql-from-outsider", mysql, 3306) in (
        "timeout", "refused")
    # the database's own namespace gives no pass either
    assert _from_new_pod(k, "spire-downstream", "mysql-from-server-ns", mysql, 3306) in (
        "timeout", "refused")


def enterprise_api_only_from_its_callers(kubes: dict[str, Kube]) -> None:
    k = kubes[DOWNSTREAM]
    api = "enterprise-api.downstream-workloads.svc"
    for caller in ("data-processor", "security-gateway"):
        word = _from_pod_of(k, "downstream-workloads", caller, caller, api, 8443)
        assert word == "open", f"{caller} cannot reach the API it calls"
    # a pod in the very namespace of the API and its callers, that is not one of them
    assert _from_new_pod(k, "downstream-workloads", "api-from-non-caller", api, 8443) in (
        "timeout", "refused")


def telemetry_only_from_prometheus(kubes: dict[str, Kube]) -> None:
    """An agent's telemetry (no Service with an address: its pod's IP) opens to a pod with
    the Prometheus labels in the monitoring namespace, and to no other pod there."""
    k = kubes[DOWNSTREAM]
    (agent,) = k.core.list_namespaced_pod(
        "spire-downstream-agents", label_selector="app.kubernetes.io/name=downstream-agent-1").items
    ip, port = agent.status.pod_ip, 8281
    prometheus = {"app.kubernetes.io/name": "prometheus",
                  "app.kubernetes.io/component": "monitoring"}  # fmt: skip
    assert _from_new_pod(k, "spire-monitoring", "telemetry-as-prometheus", ip, port,
                         labels=prometheus) == "open", "Prometheus' way to telemetry is closed"
    assert _from_new_pod(k, "spire-monitoring", "telemetry-from-monitoring-ns", ip, port) in (
        "timeout", "refused")


def verifies_green_behind_the_policies(verify_json: Callable[[], str]) -> None:
    report: dict[str, Any] = json.loads(verify_json())
    assert report["ok"], [c for c in report["checks"] if not c["ok"]]
    ids = {c["id"] for c in report["checks"]}
    for expected in (  # attestation, SVIDs, federation both ways, the NodePort gateway
        "agent-attested:upstream-agent",
        "agent-attested:downstream-agent-3",
        "workload-svid:enterprise-api",
        "federated-bundle:spire-upstream-server->downstream.example.org",
        "federated-bundle:spire-downstream-server->enterprise-root.org",
        "mtls:upstream-client->enterprise-api",
        "workload-health:security-gateway",
        "workload-health:enterprise-api",
    ):
        assert expected in ids, f"no check {expected}"


CHECKS = (
    policies_in_place_and_enforced_by_every_node,
    server_api_only_from_its_agents_while_the_bundle_endpoint_answers_anyone,
    mysql_only_from_its_server,
    enterprise_api_only_from_its_callers,
    telemetry_only_from_prometheus,
)
