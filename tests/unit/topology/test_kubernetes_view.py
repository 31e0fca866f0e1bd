"""The Kubernetes target runs sidecar-carrying workloads unless its one switch is off (then
it leaves them out and says so in one line), and renders sidecars correctly when
asked directly (a small topology of its own)."""

from __future__ import annotations

import dataclasses

from spire_fabric.render.kubernetes._workloads import render_workload
from spire_fabric.topology import (
    MONITORING_NAMESPACE,
    Sidecar,
    TopologyError,
    kubernetes_view,
    local_only_note,
    local_only_notes,
    preset,
    sidecars_on_kubernetes,
    validate_topology,
)


def test_enterprise_on_kubernetes_is_the_preset_without_sidecar_workloads() -> None:
    full = preset("enterprise")
    view = kubernetes_view(full, sidecars=False)
    assert view.left_out == ("inventory", "api-poller", "catalog")
    assert [w.name for w in view.topology.workloads] == [
        "upstream-client", "enterprise-api", "data-processor", "security-gateway"]
    # the agents only they used go with them; catalog's shared agent stays
    assert "downstream-agent-2" in {a.name for a in view.topology.agents}
    assert not {"downstream-agent-4", "downstream-agent-5"} & {a.name for a in view.topology.agents}
    # enterprise-api's option naming inventory goes too, flag and value
    api = view.topology.workload("enterprise-api")
    assert api.run is not None
    assert not [a for a in api.run.args if "inventory" in a]
    assert "--metrics-listen" in api.run.args or "--grant" in api.run.args
    assert local_only_note(view.left_out) == (
        "inventory, api-poller, catalog: left out with their sidecars "
        "(SPIRE_FABRIC_KUBERNETES_SIDECARS is not 1); unset it to run them on Kubernetes too")
    # monitoring runs there: kept, with a namespace of its own in each cluster
    assert full.monitoring is not None and view.topology.monitoring == full.monitoring
    assert local_only_notes(view) == [local_only_note(view.left_out)]
    assert [c.namespaces[-1] for c in view.topology.clusters] == [MONITORING_NAMESPACE] * 2
    assert [len(c.namespaces) for c in view.topology.clusters] == [
        len(c.namespaces) + 1 for c in full.clusters]


def test_a_topology_without_sidecars_is_unchanged_and_says_nothing() -> None:
    t = preset("basic")
    view = kubernetes_view(t)
    assert view.topology is t and view.left_out == () and local_only_note(()) == ""
    assert local_only_notes(view) == [] and t.monitoring is None


def test_sidecars_render_as_containers_beside_an_app_on_loopback() -> None:
    """The rendering itself, on the basic preset's one workload given a server sidecar."""
    t = preset("basic")
    w = t.workloads[0]
    w = dataclasses.replace(w, sidecars=(Sidecar("tls", "server", app_port=9000,
                                                 allow_trust_domains=("example.org",),
                                                 status_port=9001),))  # fmt: skip
    objs = render_workload(dataclasses.replace(t, workloads=(w,)), w)
    pod = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    app, tls = pod["containers"]
    assert "ports" not in app and app["command"][-1].startswith("read=")  # app: no port
    assert "127.0.0.1:9000" in app["command"]  # {listen} is the app's loopback port
    assert tls["name"] == "tls" and tls["image"] == t.kubernetes.images.ghostunnel
    assert tls["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]
    cmd = tls["command"]
    assert cmd[:2] == ["ghostunnel", "server"]
    assert cmd[cmd.index("--target") + 1] == "127.0.0.1:9000"
    assert cmd[cmd.index("--allow-uri") + 1] == "spiffe://example.org/**"
    assert tls["readinessProbe"]["httpGet"] == {"path": "/_status", "port": 9001}
    assert cmd[cmd.index("--status") + 1].startswith("http://")  # the probe speaks HTTP
    assert tls["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_switch_is_off_until_the_cluster_tests_pass_and_the_environment_overrides_it(
        monkeypatch) -> None:
    """Off: the view above; the variable turns it on (or off) for one run."""
    from spire_fabric.topology import _kubernetes_only as ko

    monkeypatch.delenv(ko.SIDECARS_ENV, raising=False)
    assert sidecars_on_kubernetes() is ko.KUBERNETES_SIDECARS
    monkeypatch.setenv(ko.SIDECARS_ENV, "1")
    assert sidecars_on_kubernetes() is True
    assert kubernetes_view(preset("enterprise")).left_out == ()
    monkeypatch.setenv(ko.SIDECARS_ENV, "0")
    assert sidecars_on_kubernetes() is False
    assert kubernetes_view(preset("enterprise")).left_out == ("inventory", "api-poller", "catalog")


def test_with_sidecars_every_workload_runs_on_its_kubernetes_agent() -> None:
    """inventory and api-poller have agents of their own locally only: on Kubernetes they
    share enterprise-api's and the gateway's, and the cluster needs no fourth or fifth node."""
    full = preset("enterprise")
    view = kubernetes_view(full, sidecars=True)
    assert view.left_out == () and local_only_notes(view) == []
    t = view.topology
    assert [w.name for w in t.workloads] == [w.name for w in full.workloads]
    assert t.workload("inventory").agent == "downstream-agent-1"
    assert t.workload("api-poller").agent == "downstream-agent-3"
    assert t.workload("catalog").agent == "downstream-agent-2"  # unchanged
    assert all(w.kubernetes is None or w.kubernetes.agent is None for w in t.workloads)
    assert [a.name for a in t.agents] == [a.name for a in full.agents
                                          if a.name not in ("downstream-agent-4",
                                                            "downstream-agent-5")]
    # nothing else moves: enterprise-api keeps its option naming inventory
    api = t.workload("enterprise-api")
    assert api.run is not None and "{url:inventory}" in api.run.args
    assert t.monitoring == full.monitoring


def test_an_agent_a_moved_workload_shares_with_another_stays() -> None:
    """Only agents no workload uses any more are left out: here inventory runs on
    api-poller's local agent everywhere, so that agent stays when api-poller moves."""
    full = preset("enterprise")
    t = dataclasses.replace(full, workloads=tuple(
        dataclasses.replace(w, agent="downstream-agent-5",
                            kubernetes=dataclasses.replace(w.kubernetes, agent=None))
        if w.name == "inventory" and w.kubernetes is not None else w
        for w in full.workloads))  # fmt: skip
    view = kubernetes_view(t, sidecars=True).topology
    assert view.workload("inventory").agent == "downstream-agent-5"
    assert view.workload("api-poller").agent == "downstream-agent-3"
    agents = {a.name for a in view.agents}
    assert "downstream-agent-5" in agents
    assert "downstream-agent-4" in agents  # no workload moved off it: not ours to drop


def test_enterprise_pods_with_sidecars_on_their_agents_images_and_namespaces(
        monkeypatch) -> None:
    """The whole enterprise rendering with the switch on: the three sidecar workloads in
    pods next to the agents they moved to, with the nginx and ghostunnel images, the apps
    on loopback, catalog's helper beside nginx in one PID namespace."""
    from spire_fabric.render.kubernetes import render_kubernetes_objects
    from spire_fabric.topology._kubernetes_only import SIDECARS_ENV

    monkeypatch.setenv(SIDECARS_ENV, "1")
    t = kubernetes_view(preset("enterprise"), sidecars=True).topology
    objs = render_kubernetes_objects(t)
    deps = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment"}
    assert {"inventory", "api-poller", "catalog"} <= set(deps)
    assert not [o for o in objs if "downstream-agent-4" in o["metadata"]["name"]
                or "downstream-agent-5" in o["metadata"]["name"]]

    def pod(name: str) -> dict:
        return deps[name]["spec"]["template"]["spec"]

    images = t.kubernetes.images
    inv = pod("inventory")
    app, tls = inv["containers"]
    assert app["image"] == images.nginx and tls["image"] == images.ghostunnel
    assert "127.0.0.1:30446" in app["command"] and "ports" not in app
    assert tls["command"][tls["command"].index("--listen") + 1] == "0.0.0.0:8443"
    assert inv["nodeSelector"] == pod("enterprise-api")["nodeSelector"]
    assert inv["volumes"][0] == pod("enterprise-api")["volumes"][0]  # agent-1's socket
    poller = pod("api-poller")
    papp, mtls = poller["containers"]
    assert papp["image"] == images.workload and mtls["image"] == images.ghostunnel
    assert mtls["command"][mtls["command"].index("--target") + 1] == (
        "enterprise-api.downstream-workloads.svc:8443")
    assert poller["nodeSelector"] == pod("security-gateway")["nodeSelector"]
    cat = pod("catalog")
    capp, helper = cat["containers"]
    assert capp["image"] == images.nginx and helper["image"] == images.workload
    assert cat["shareProcessNamespace"] is True
    assert helper["command"][:3] == ["python", "-m", "spire_fabric.helper"]
    assert {"name": "svid", "mountPath": "/run/spire-fabric/svid"} in capp["volumeMounts"]
    assert capp["ports"][0]["containerPort"] == 8443  # nginx terminates mTLS itself


def test_kubernetes_agent_is_validated_by_name() -> None:
    t = preset("enterprise")

    def with_agent(agent: str) -> list[str]:
        ws = tuple(dataclasses.replace(w, kubernetes=dataclasses.replace(w.kubernetes,
                                                                         agent=agent))
                   if w.name == "inventory" and w.kubernetes is not None else w
                   for w in t.workloads)  # fmt: skip
        try:
            validate_topology(dataclasses.replace(t, workloads=ws))
        except TopologyError as err:
            return [str(p) for p in err.problems]
        return []

    p = "workloads[inventory].kubernetes.agent"
    assert any(x.startswith(f"{p}: unknown agent 'nope'") for x in with_agent("nope"))
    assert any(x.startswith(f"{p}: agent 'upstream-agent' belongs to server "
                            "'spire-upstream-server'") for x in with_agent("upstream-agent"))
    assert with_agent("downstream-agent-2") == []
