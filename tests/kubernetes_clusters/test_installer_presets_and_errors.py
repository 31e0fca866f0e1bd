"""The other presets on a real cluster, and each refusal of `up --target kubernetes` with
the message a user gets. Every refusal happens before anything is applied or names what
is not ready; each test removes what it made."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from kubernetes_clusters._kube import UPSTREAM, Kube
from kubernetes_clusters.test_installer import KubeDeploy

# A deployment from nothing (images loaded into every node first) takes minutes.
pytestmark = pytest.mark.timeout(1500)


ONE_CLUSTER = ["--context", f"spire-cluster={UPSTREAM}"]


@pytest.fixture(scope="module")
def images(kubes: dict[str, Kube]) -> list[str]:
    from kube_harness import installer_args, load_installer_images

    load_installer_images(say=lambda _: None)
    return installer_args()


@pytest.fixture
def deploy(images: list[str], tmp_path: Path) -> Iterator[KubeDeploy]:
    d = KubeDeploy(tmp_path / "state", images)
    yield d
    if (d.state_dir / "kubernetes.json").exists():
        r = d.run("down", "--purge", timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("topology", ["basic", "nested", "crd-free"])
def test_preset_comes_up_green_and_goes_away(
    topology: str, deploy: KubeDeploy, kubes: dict[str, Kube], tmp_path: Path
) -> None:
    source = str(_basic_with_host_ca(tmp_path)) if topology == "basic" else topology
    up = deploy.run("up", "--topology", source, *_contexts(topology))
    assert up.returncode == 0, up.stdout[-8000:] + up.stderr[-3000:]
    assert " 0 failed" in up.stdout
    if topology == "basic":
        _agent_verified_the_kubelet_with_the_host_ca_file(kubes[UPSTREAM])
    if topology == "nested":
        assert "nested-chain:spire-child-server" in deploy.ok(
            "verify", "--output", "json").stdout  # fmt: skip
    if topology == "crd-free":
        _replaced_join_token_agent_is_healed(deploy, kubes[UPSTREAM])
    if topology == "basic":
        with _foreign_cluster_spiffe_id(kubes[UPSTREAM]) as still_there:
            down = deploy.ok("down", "--purge", timeout=600)
            # the CRD another topology still uses stays; the two nobody uses go
            assert "kept CRD clusterspiffeids.spire.spiffe.io" in down.stdout, down.stdout
            assert "ClusterSPIFFEID someone-elses (topology other)" in down.stdout, down.stdout
            assert still_there() == ["clusterspiffeids.spire.spiffe.io"]
    else:
        deploy.ok("down", "--purge", timeout=600)
    namespaces = {n.metadata.name for n in kubes[UPSTREAM].core.list_namespace().items}
    assert not namespaces & {"spire", "spire-agents", "apps", "spire-root", "spire-child"}


def _basic_with_host_ca(tmp_path: Path) -> Path:
    """``basic`` with ``kubelet_verification: host-ca``: the agent mounts the node's CA file
    (the test cluster's, next to its key, which must stay out of the pod). The enterprise
    tests cover the default (the service-account CA), so basic's one bring-up covers this."""
    import dataclasses

    from kube_harness._plan import base_dir

    from spire_fabric.topology import dump_topology, preset

    ca = base_dir() / UPSTREAM / "pki" / "ca.crt"
    assert ca.is_file() and (ca.parent / "ca.key").is_file()
    t = preset("basic")
    agents = tuple(
        dataclasses.replace(a, kubernetes=dataclasses.replace(
            a.kubernetes, kubelet_verification="host-ca", kubelet_ca_host_path=str(ca)))
        for a in t.agents if a.kubernetes is not None
    )  # fmt: skip
    topology = tmp_path / "basic-host-ca.yaml"
    topology.write_text(dump_topology(dataclasses.replace(t, agents=agents)))
    return topology


def _agent_verified_the_kubelet_with_the_host_ca_file(k: Kube) -> None:
    """The green verify fetched the workload's SVID, so it was attested through a kubelet
    verified against the mounted CA file; the file is mounted alone (type File)."""
    from kube_harness._plan import base_dir

    ca = base_dir() / UPSTREAM / "pki" / "ca.crt"
    conf = k.core.read_namespaced_config_map("spire-agent-config", "spire-agents").data
    assert 'kubelet_ca_path = "/run/spire/kubelet-ca/ca.crt"' in conf["agent.conf"]
    (pod,) = k.core.list_namespaced_pod(
        "spire-agents", label_selector="app.kubernetes.io/component=agent").items
    (volume,) = [v for v in pod.spec.volumes if v.name == "kubelet-ca"]
    assert volume.host_path.path == str(ca) and volume.host_path.type == "File"


def _replaced_join_token_agent_is_healed(deploy: KubeDeploy, k: Kube) -> None:
    """A join_token agent's pod replaced after attesting cannot attest again with its spent
    token (its SVID was on an emptyDir): it crash-loops until `up` gives it a new one."""
    ns, selector = "spire-agents", "app.kubernetes.io/name=spire-agent"
    (pod,) = k.core.list_namespaced_pod(ns, label_selector=selector).items
    k.core.delete_namespaced_pod(pod.metadata.name, ns)

    def refused() -> bool:  # the new pod's agent exits: the token was used
        return any(
            p.metadata.uid != pod.metadata.uid and any(
                (cs.restart_count or 0) > 0 or (cs.state.terminated is not None)
                for cs in p.status.container_statuses or [])
            for p in k.core.list_namespaced_pod(ns, label_selector=selector).items)

    k.wait("the replaced agent refused with its spent token", refused, timeout=120)
    healed = deploy.run("up", "--topology", "crd-free", *_contexts("crd-free"))
    assert healed.returncode == 0, healed.stdout[-6000:] + healed.stderr[-3000:]
    assert " 0 failed" in healed.stdout


@contextlib.contextmanager
def _foreign_cluster_spiffe_id(k: Kube) -> Iterator[Callable[[], list[str]]]:
    """A ClusterSPIFFEID of another topology (as a second topology's controller manager in
    the same cluster would have) for the test's span; then it and the CRD go."""
    from kubernetes import client as k8s

    custom = k8s.CustomObjectsApi(k.api)
    ext = k8s.ApiextensionsV1Api(k.api)
    custom.create_cluster_custom_object("spire.spiffe.io", "v1alpha1", "clusterspiffeids", {
        "apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID",
        "metadata": {"name": "someone-elses", "labels": {
            "app.kubernetes.io/managed-by": "spire-fabric", "spire-fabric.io/topology": "other"}},
        "spec": {"spiffeIDTemplate": "spiffe://example.org/other"}})  # fmt: skip

    def still_there() -> list[str]:
        return sorted(c.metadata.name for c in ext.list_custom_resource_definition().items
                      if c.spec.group == "spire.spiffe.io")  # fmt: skip

    try:
        yield still_there
    finally:
        with contextlib.suppress(Exception):
            custom.delete_cluster_custom_object(
                "spire.spiffe.io", "v1alpha1", "clusterspiffeids", "someone-elses")
        with contextlib.suppress(Exception):
            ext.delete_custom_resource_definition("clusterspiffeids.spire.spiffe.io")
        k.wait("the test's CRD gone", lambda: not still_there(), timeout=60)


def _contexts(topology: str) -> list[str]:
    cluster = "nested-cluster" if topology == "nested" else "spire-cluster"
    return ["--context", f"{cluster}={UPSTREAM}"]


@contextlib.contextmanager
def _namespace(k: Kube, name: str) -> Iterator[None]:
    k.ensure_namespace(name)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            k.core.delete_namespace(name, grace_period_seconds=0)
        # deletion is asynchronous: a later test must not meet it still Terminating
        names = lambda: {n.metadata.name for n in k.core.list_namespace().items}  # noqa: E731
        k.wait(f"namespace {name} gone", lambda: name not in names(), timeout=120)


def test_a_namespace_of_someone_else_is_refused_before_anything_changes(
    deploy: KubeDeploy, kubes: dict[str, Kube]
) -> None:
    k = kubes[UPSTREAM]
    with _namespace(k, "apps"):
        r = deploy.run("up", "--topology", "basic", *ONE_CLUSTER)
        assert r.returncode == 1
        assert "namespace apps already exists in cluster spire-cluster" in r.stdout + r.stderr
        assert "belongs to something else" in r.stdout + r.stderr
        namespaces = {n.metadata.name for n in k.core.list_namespace().items}
        assert "spire" not in namespaces and "spire-agents" not in namespaces


def test_a_node_port_already_allocated_is_named_with_its_owner(
    deploy: KubeDeploy, kubes: dict[str, Kube]
) -> None:
    k = kubes[UPSTREAM]
    with _namespace(k, "sfk-squatter"):
        k.core.create_namespaced_service("sfk-squatter", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "squatter"},
            "spec": {"type": "NodePort", "selector": {"x": "y"},
                     "ports": [{"port": 80, "nodePort": 31443}]}})  # fmt: skip
        r = deploy.run("up", "--topology", "enterprise")
        out = r.stdout + r.stderr
        assert r.returncode == 1, out
        assert "NodePort 31443 is already allocated in cluster upstream-cluster" in out
        assert "sfk-squatter/squatter" in out


def test_an_image_that_cannot_be_pulled_is_reported_from_the_pod_status(
    deploy: KubeDeploy,
) -> None:
    extra = list(deploy.extra)  # every image of the test clusters but the workload's
    i = next(i for i, a in enumerate(extra) if a.startswith("workload="))
    del extra[i - 1 : i + 1]
    nope = KubeDeploy(deploy.state_dir, [*extra, "--image",
                                         "workload=spire-fabric.local/no-such-image:1"])
    r = nope.run("up", "--topology", "basic", *ONE_CLUSTER, "--timeout", "120")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Deployment apps/example-app in cluster spire-cluster" in out
    assert "cannot start" in out and "spire-fabric.local/no-such-image:1" in out
    assert "ErrImagePull" in out or "ImagePullBackOff" in out


def test_a_crd_that_will_not_establish_names_its_condition(
    deploy: KubeDeploy, kubes: dict[str, Kube]
) -> None:
    from kubernetes import client

    ext = client.ApiextensionsV1Api(kubes[UPSTREAM].api)
    squatter = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "squatters.spire.spiffe.io"},
        "spec": {"group": "spire.spiffe.io", "scope": "Cluster",
                 "names": {"plural": "squatters", "singular": "squatter",
                           "kind": "ClusterSPIFFEID", "listKind": "ClusterSPIFFEIDList"},
                 "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                          "x-kubernetes-preserve-unknown-fields": True}}}]},
    }  # fmt: skip
    ext.create_custom_resource_definition(squatter)
    try:
        r = deploy.run("up", "--topology", "basic", *ONE_CLUSTER, "--timeout", "20")
        out = r.stdout + r.stderr
        assert r.returncode == 1, out
        assert "CustomResourceDefinition not established" in out
        assert "clusterspiffeids.spire.spiffe.io: NamesAccepted=False" in out
    finally:
        ext.delete_custom_resource_definition("squatters.spire.spiffe.io")


def test_no_permission_names_the_verb_and_the_resource(
    deploy: KubeDeploy, kubes: dict[str, Kube], tmp_path: Path
) -> None:
    from kubernetes import client

    k = kubes[UPSTREAM]
    rbac = client.RbacAuthorizationV1Api(k.api)
    with _namespace(k, "sfk-limited"):
        k.core.create_namespaced_service_account("sfk-limited", {"metadata": {"name": "viewer"}})
        # may read nodes (so it gets as far as asking), nothing else
        rbac.create_cluster_role({"metadata": {"name": "sfk-limited-nodes"}, "rules": [
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}]})  # fmt: skip
        rbac.create_cluster_role_binding({
            "metadata": {"name": "sfk-limited-nodes"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "sfk-limited-nodes"},
            "subjects": [{"kind": "ServiceAccount", "name": "viewer",
                          "namespace": "sfk-limited"}]})  # fmt: skip
        try:
            token = k.core.create_namespaced_service_account_token(
                "viewer", "sfk-limited", {"spec": {"expirationSeconds": 600}}
            ).status.token
            kubeconfig = _limited_kubeconfig(token, tmp_path)
            args = [a for a in deploy.extra]
            args[args.index("--kubeconfig") + 1] = str(kubeconfig)
            limited = KubeDeploy(deploy.state_dir, args)
            r = limited.run("up", "--topology", "basic", "--context", "spire-cluster=limited")
            out = r.stdout + r.stderr
            assert r.returncode == 1, out
            assert "no permission in cluster spire-cluster (context limited): cannot " in out
            namespaces = {n.metadata.name for n in k.core.list_namespace().items}
            assert "spire" not in namespaces
        finally:
            rbac.delete_cluster_role_binding("sfk-limited-nodes")
            rbac.delete_cluster_role("sfk-limited-nodes")


def _limited_kubeconfig(token: str, tmp_path: Path) -> Path:
    from kube_harness import kubeconfig_path

    admin = yaml.safe_load(Path(kubeconfig_path()).read_text())
    cluster = next(c for c in admin["clusters"] if c["name"] == UPSTREAM)
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "limited",
        "clusters": [{"name": "c", "cluster": cluster["cluster"]}],
        "users": [{"name": "viewer", "user": {"token": token}}],
        "contexts": [{"name": "limited", "context": {"cluster": "c", "user": "viewer"}}],
    }  # fmt: skip
    path = tmp_path / "limited.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path
