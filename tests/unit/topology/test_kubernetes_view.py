"""The Kubernetes target leaves sidecar-carrying workloads out in this release (their
cluster images are not built), says so in one line, and renders sidecars correctly when
asked directly (a small topology of its own)."""

from __future__ import annotations

import dataclasses

from spire_fabric.render.kubernetes._workloads import render_workload
from spire_fabric.topology import (
    MONITORING_NAMESPACE,
    Sidecar,
    kubernetes_view,
    local_only_note,
    local_only_notes,
    preset,
)


def test_enterprise_on_kubernetes_is_the_preset_without_sidecar_workloads() -> None:
    full = preset("enterprise")
    view = kubernetes_view(full)
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
        "inventory, api-poller, catalog: sidecars run on the local target only in this "
        "release; their cluster images are not built yet")
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
