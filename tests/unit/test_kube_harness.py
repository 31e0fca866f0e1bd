"""The pure parts of the Kubernetes test-cluster harness (no root, no clusters)."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import shlex
import tarfile
from pathlib import Path

import kubernetes_validate
import pytest
from kube_harness import (
    _build,
    _host,
    _installer,
    _network,
    _objects,
    _plan,
    _teardown,
)

from spire_fabric.runtime.images import _oci


def _blob(tar: tarfile.TarFile, digest: str) -> bytes:
    fh = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
    assert fh is not None
    return fh.read()


def test_oci_image_tarball_is_a_consistent_image_layout(tmp_path: Path) -> None:
    exe = tmp_path / "hello"
    exe.write_bytes(b"#!/bin/sh\necho hi\n")
    exe.chmod(0o755)
    layer = _oci.files_layer([("usr/local/bin/hello", exe)], tmp_path / "layer.tar")
    out = tmp_path / "image.oci.tar"
    ref = "spire-fabric.local/hello:1.2.3"
    _oci.write_oci_image(out, ref, [layer], ["/usr/local/bin/hello"], ["A=b"])
    with tarfile.open(out) as tar:
        assert json.loads(tar.extractfile("oci-layout").read()) == {  # type: ignore[union-attr]
            "imageLayoutVersion": "1.0.0"}
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        (desc,) = index["manifests"]
        assert desc["annotations"]["io.containerd.image.name"] == ref
        manifest_bytes = _blob(tar, desc["digest"])
        assert "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() == desc["digest"]
        manifest = json.loads(manifest_bytes)
        config = json.loads(_blob(tar, manifest["config"]["digest"]))
        (layer_desc,) = manifest["layers"]
        layer_bytes = _blob(tar, layer_desc["digest"])
        assert config["rootfs"]["diff_ids"] == [layer_desc["digest"]]
        assert config["config"]["Entrypoint"] == ["/usr/local/bin/hello"]
        assert "A=b" in config["config"]["Env"]
    (tmp_path / "l.tar").write_bytes(layer_bytes)
    with tarfile.open(tmp_path / "l.tar") as lt:
        info = lt.getmember("usr/local/bin/hello")
        assert info.mode == 0o755 and info.uid == 0


def test_same_inputs_give_the_same_layer_digest(tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_text("x")
    a = _oci.files_layer([("a/f", src)], tmp_path / "a.tar")
    b = _oci.files_layer([("a/f", src)], tmp_path / "b.tar")
    assert _oci.sha256_file(a) == _oci.sha256_file(b)


def test_staging_modules_come_from_the_kubernetes_replace_block(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text(
        "module k8s.io/kubernetes\n\ngo 1.26.0\n\nreplace (\n"
        "\tk8s.io/api => ./staging/src/k8s.io/api\n"
        "\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n)\n"
        "replace example.com/x => example.com/x v1.0.0\n")
    assert _build._staging_replaces(tmp_path) == ["k8s.io/api", "k8s.io/client-go"]
    assert _build._go_directive(tmp_path / "go.mod") == "1.26.0"


def test_each_version_has_its_own_cache_directory() -> None:
    kube = _build.PARTS["kubernetes"]
    assert kube.cache_dir.name == f"kubernetes-{_build.KUBERNETES_VERSION}"
    assert _build.PARTS["etcd"].cache_dir.name == f"etcd-{_build.ETCD_VERSION}"


def test_clusters_use_disjoint_private_ranges_named_as_in_the_design() -> None:
    up, down = _plan.CLUSTERS
    assert (up.name, down.name) == ("upstream-spire-cluster", "downstream-spire-cluster")
    nets = [ipaddress.ip_network(c) for s in (up, down)
            for c in (s.link_cidr, s.pod_cidr, s.service_cidr)]
    for i, a in enumerate(nets):
        assert a.is_private
        for b in nets[i + 1:]:
            assert not a.overlaps(b)
    fence = ipaddress.ip_network(_plan.OUTSIDE_RANGE)
    services = ipaddress.ip_network(_plan.SERVICE_RANGE)
    for s in (up, down):
        assert ipaddress.ip_network(s.pod_cidr).subnet_of(fence)  # type: ignore[arg-type]
        assert ipaddress.ip_network(s.service_cidr).subnet_of(services)  # type: ignore[arg-type]
        assert ipaddress.ip_address(s.dns_ip) in ipaddress.ip_network(s.service_cidr)
        # below the 30000-60000 loopback ports other tests on the machine use
        assert all(s.port(o) < 30000 for o in (57, 59, 79, 80))


def test_upstream_has_one_node_and_downstream_one_per_spire_agent() -> None:
    up, down = _plan.CLUSTERS
    assert [n.name for n in up.node_specs] == ["upstream-node"]
    assert [n.name for n in down.node_specs] == [
        "downstream-node", "downstream-node-2", "downstream-node-3"]


def test_the_first_node_keeps_the_one_node_names_and_addresses(tmp_path: Path) -> None:
    up, down = _plan.CLUSTERS
    first = down.node(1)
    assert (first.name, first.netns, first.host_veth, first.cgroup) == (
        "downstream-node", "sfk-down", "sfk-down0", "sfk-downstream")
    assert (first.host_ip, first.node_ip, first.link_cidr) == (
        "10.250.2.1", "10.250.2.2", "10.250.2.0/30")
    assert first.dir(tmp_path) == tmp_path
    # the cluster's own answers are its first node's: the API server is on that link
    assert (down.node_ip, down.node_name, down.netns, down.host_veth) == (
        "10.250.2.2", "downstream-node", "sfk-down", "sfk-down0")
    assert down.api_url == "https://10.250.2.1:6443"
    assert up.node(1).node_ip == "10.250.1.2"


def test_node_k_gets_the_kth_link_pod_subnet_and_names(tmp_path: Path) -> None:
    down = _plan.CLUSTERS[1]
    plan = [(n.name, n.netns, n.host_veth, n.peer_veth, n.cgroup, n.host_ip, n.node_ip,
             n.link_cidr, n.pod_cidr) for n in down.node_specs]
    assert plan == [
        ("downstream-node", "sfk-down", "sfk-down0", "sfk-down1", "sfk-downstream",
         "10.250.2.1", "10.250.2.2", "10.250.2.0/30", "10.251.2.0/26"),
        ("downstream-node-2", "sfk-down2", "sfk-down20", "sfk-down21", "sfk-downstream-2",
         "10.250.2.5", "10.250.2.6", "10.250.2.4/30", "10.251.2.64/26"),
        ("downstream-node-3", "sfk-down3", "sfk-down30", "sfk-down31", "sfk-downstream-3",
         "10.250.2.9", "10.250.2.10", "10.250.2.8/30", "10.251.2.128/26"),
    ]
    assert down.node(2).dir(tmp_path) == tmp_path / "downstream-node-2"


@pytest.mark.parametrize("spec", _plan.CLUSTERS, ids=lambda s: s.name)
def test_every_possible_node_fits_its_cluster_ranges_without_overlap(
        spec: _plan.ClusterSpec) -> None:
    nodes = spec.possible_nodes
    assert len(nodes) == _plan.MAX_NODES
    links = [ipaddress.ip_network(n.link_cidr) for n in nodes]
    pods = [ipaddress.ip_network(n.pod_cidr) for n in nodes]
    for n, link, pod in zip(nodes, links, pods, strict=True):
        assert link.prefixlen == 30
        assert link.subnet_of(ipaddress.ip_network(spec.link_cidr))  # type: ignore[arg-type]
        assert pod.subnet_of(ipaddress.ip_network(spec.pod_cidr))  # type: ignore[arg-type]
        # host side and node side are the two usable addresses of the /30
        assert [str(h) for h in link.hosts()] == [n.host_ip, n.node_ip]
    for group in (links, pods):
        for i, a in enumerate(group):
            assert all(not a.overlaps(b) for b in group[i + 1:])
    # names are unique, and every link name fits the kernel's 15 characters
    for attr in ("name", "netns", "host_veth", "peer_veth", "cgroup"):
        values = [getattr(n, attr) for n in nodes]
        assert len(set(values)) == len(values), attr
    names = [v for n in nodes for v in (n.host_veth, n.peer_veth)]
    assert len(set(names)) == len(names)
    assert all(len(v) <= 15 and v.startswith("sfk-") for v in names)


def test_node_counts_outside_the_address_plan_are_refused() -> None:
    with pytest.raises(_plan.KubeClusterError, match="between 1 and 4"):
        _plan.ClusterSpec("x-cluster", "x", 3, nodes=5)
    with pytest.raises(_plan.KubeClusterError):
        _plan.ClusterSpec("x-cluster", "x", 3, nodes=0)


def test_the_fence_forwards_only_between_our_node_links() -> None:
    rules = _network.fence_rules(_plan.CLUSTERS)
    links = ["sfk-up0", "sfk-down0", "sfk-down20", "sfk-down30"]
    accepts = [r for r in rules if r[-1] == "ACCEPT"]
    assert all(r[:2] == ["filter", "FORWARD"] for r in accepts)
    pairs = {(r[r.index("-i") + 1], r[r.index("-o") + 1]) for r in accepts}
    assert pairs == {(a, b) for a in links for b in links if a != b}
    assert len(accepts) == len(pairs)
    # the accepts come first, then the drops for anything else on an sfk-* link
    drops = [i for i, r in enumerate(rules) if r[-1] == "DROP"]
    assert drops and min(drops) > max(rules.index(r) for r in accepts)
    assert {tuple(rules[i][2:4]) for i in drops} == {("-i", "sfk-+"), ("-o", "sfk-+")}
    # the fence test's outside link is an sfk-* link but not a node link
    assert "sfk-out0" not in {x for p in pairs for x in p}


def test_the_cli_sets_node_counts() -> None:
    from kube_harness import __main__ as cli

    up, down = cli._with_node_counts(["down=2", "upstream-spire-cluster=2"])
    assert (up.nodes, down.nodes) == (2, 2)
    assert cli._with_node_counts([]) == _plan.CLUSTERS
    with pytest.raises(_plan.KubeClusterError, match="CLUSTER=N"):
        cli._with_node_counts(["sideways=2"])


def test_state_records_node_counts_and_reads_them_back(tmp_path: Path) -> None:
    state = _host.State(tmp_path / "state.json")
    assert _host.recorded_specs(state) == _plan.CLUSTERS
    two = (_plan.ClusterSpec("upstream-spire-cluster", "up", 1, nodes=1),
           _plan.ClusterSpec("downstream-spire-cluster", "down", 2, nodes=2))
    state.data["clusters"] = [c.to_json() for c in two]
    state.save()
    assert _host.recorded_specs(_host.State(tmp_path / "state.json")) == two
    # a state file of the one-node harness (no node counts) is read as one node each, so
    # `up` with the defaults does not take those clusters for its own
    legacy = _host.State(tmp_path / "legacy.json")
    legacy.data["pids"].append(["upstream-spire-cluster/etcd", 1, "1"])
    assert [c.nodes for c in _host.recorded_specs(legacy)] == [1, 1]


@pytest.mark.parametrize("spec", _plan.CLUSTERS, ids=lambda s: s.name)
def test_bootstrap_objects_pass_schema_validation(spec: _plan.ClusterSpec,
                                                  tmp_path: Path) -> None:
    docs = _objects.bootstrap_manifests(spec, tmp_path)
    version = kubernetes_validate.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    dns = next(d for d in docs if d["kind"] == "Service")
    assert dns["spec"]["clusterIP"] == spec.dns_ip
    pvs = [d for d in docs if d["kind"] == "PersistentVolume"]
    assert len(pvs) == _plan.PV_COUNT
    assert all(str(tmp_path) in pv["spec"]["hostPath"]["path"] for pv in pvs)


def test_cni_results_of_our_networks_and_their_loopbacks_are_ours(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def result(network: str, cid: str, ifname: str, netns: str) -> dict[str, object]:
        return {"kind": "cniCacheV1", "containerId": cid, "networkName": network,
                "ifName": ifname, "result": {"interfaces": [
                    {"name": ifname, "sandbox": f"/var/run/netns/{netns}"}]}}

    files = {
        "sfk-down-aaa-eth0": result("sfk-down", "aaa", "eth0", "cni-1"),
        "cni-loopback-aaa-lo": result("cni-loopback", "aaa", "lo", "cni-1"),
        # another CNI user's pod on the same machine: not ours, kept
        "other-bbb-eth0": result("other", "bbb", "eth0", "cni-2"),
        "cni-loopback-bbb-lo": result("cni-loopback", "bbb", "lo", "cni-2"),
    }
    for name, data in files.items():
        (tmp_path / name).write_text(json.dumps(data))
    (tmp_path / "garbage").write_text("{not json")
    monkeypatch.setattr(_teardown, "CNI_RESULTS", tmp_path)
    found = _teardown._our_cni_results(_plan.CLUSTERS)
    assert sorted((p.name, n) for p, n in found) == [
        ("cni-loopback-aaa-lo", "cni-1"), ("sfk-down-aaa-eth0", "cni-1")]


def test_kubectl_is_a_part_of_its_own_so_adding_it_rebuilds_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kube, kubectl = _build.PARTS["kubernetes"], _build.PARTS["kubectl"]
    assert kube.binaries == (*_build.KUBE_COMMANDS, "pause")
    assert (kubectl.name, kubectl.version, kubectl.binaries) == (
        "kubectl", _build.KUBERNETES_VERSION, ("kubectl",))
    assert kubectl.cache_dir != kube.cache_dir
    # A Kubernetes build cached by the harness before kubectl existed (its stamp as that
    # code wrote it) is still a build: ensure_part returns it without building.
    kube.bin_dir.mkdir(parents=True)
    for name in kube.binaries:
        (kube.bin_dir / name).write_text("")
        (kube.bin_dir / name).chmod(0o755)
    (kube.cache_dir / "built.json").write_text(json.dumps(
        {"version": _build.KUBERNETES_VERSION, "binaries": list(kube.binaries),
         "seconds": 821.0}))
    monkeypatch.setattr(_build, "PARTS", {**_build.PARTS, "kubernetes": dataclasses.replace(
        kube, build=lambda *a: pytest.fail("a cached part was rebuilt"))})
    assert _build.ensure_part("kubernetes") == kube.bin_dir
    assert not _build.kubectl_built()


def test_deploy_args_load_the_images_then_print_the_installer_args_shell_quoted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "kube dir"
    monkeypatch.setenv(_plan.BASE_ENV, str(base))
    loaded: list[str] = []
    monkeypatch.setattr(_installer, "load_installer_images", lambda say: loaded.append("all"))
    line = _installer.deploy_args()
    assert loaded == ["all"]
    assert "\n" not in line
    args = shlex.split(line)
    assert args == _installer.installer_args()
    assert args[:4] == ["--kubeconfig", str(base / "kubeconfig"), "--workload-socket",
                        "host-path"]
    images = dict(a.split("=", 1) for a in args[5::2])
    assert set(images) == set(_installer.installer_images())
    assert images["workload"].startswith("spire-fabric.local/spire-fabric-python:")


def test_with_sidecars_on_the_installer_gets_the_ghostunnel_and_nginx_images(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Off (the default until the cluster tests pass) nothing more is built or loaded; on,
    the two sidecar roles are filled by images of the harness's own set."""
    from kube_harness._images import image_set

    from spire_fabric.runtime.ghostunnel import GHOSTUNNEL_VERSION
    from spire_fabric.topology._kubernetes_only import SIDECARS_ENV

    monkeypatch.setenv(SIDECARS_ENV, "0")
    assert set(_installer.installer_images()) == set(_installer.INSTALLER_IMAGES)
    monkeypatch.setenv(SIDECARS_ENV, "1")
    images = _installer.installer_images()
    assert set(images) == {*_installer.INSTALLER_IMAGES, "ghostunnel", "nginx"}
    assert images["ghostunnel"] == f"spire-fabric.local/ghostunnel:{GHOSTUNNEL_VERSION}"
    assert images["nginx"].startswith("spire-fabric.local/spire-fabric-python-nginx:")
    ghostunnel = image_set()["ghostunnel"]
    assert ghostunnel.files[0][0] == "usr/local/bin/ghostunnel"
    assert ghostunnel.base is not None  # cgo: it needs the C library of the Debian base


def test_the_harness_is_not_a_package_of_the_wheel() -> None:
    from setuptools import find_packages

    root = Path(__file__).resolve().parents[2]
    packages = find_packages(str(root / "src"))
    assert "spire_fabric.testing" in packages
    assert not [p for p in packages if "kubernetes" in p and p.startswith("spire_fabric.testing")]
    assert not (root / "src" / "spire_fabric" / "testing" / "kubernetes").exists()


def test_no_harness_file_is_over_400_lines() -> None:
    here = Path(_plan.__file__).parent
    sizes = {f.name: len(f.read_text().splitlines()) for f in here.glob("*.py")}
    assert len(sizes) >= 10
    assert {n: s for n, s in sizes.items() if s > 400} == {}


# kube-network-policies v0.8.0's own lines (pkg/networkpolicy), the ones the build replaces
_KNP_CONTROLLER_QUEUE = """\tqueue := &expr.Queue{Num: uint16(c.config.QueueID)}
\tif c.config.FailOpen {
\t\tqueue.Flag = expr.QueueFlagBypass
\t}
"""
_KNP_DNS_QUEUE = """\t\t\t&expr.Queue{Num: uint16(n.nfQueueID), Flag: expr.QueueFlagBypass},\n"""


def test_the_policy_enforcer_build_puts_the_nfqueue_target_in_every_queue_place(
    tmp_path: Path,
) -> None:
    pkg = tmp_path / "pkg" / "networkpolicy"
    pkg.mkdir(parents=True)
    (pkg / "controller.go").write_text(f"a\n{_KNP_CONTROLLER_QUEUE}b\n{_KNP_CONTROLLER_QUEUE}")
    (pkg / "dnsagent.go").write_text(_KNP_DNS_QUEUE)
    _build.substitute_nfqueue(tmp_path, "0.8.0")
    controller = (pkg / "controller.go").read_text()
    assert "expr.Queue" not in controller + (pkg / "dnsagent.go").read_text()
    assert controller.count(
        "queue := nfqueueTarget(uint16(c.config.QueueID), c.config.FailOpen)") == 2
    assert "nfqueueTarget(uint16(n.nfQueueID), true)," in (pkg / "dnsagent.go").read_text()
    helper = (pkg / "zz_nfqueue_target.go").read_text()
    assert 'Name: "NFQUEUE", Rev: 3' in helper and "package networkpolicy" in helper


def test_the_policy_enforcer_build_refuses_a_source_it_does_not_know(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg" / "networkpolicy"
    pkg.mkdir(parents=True)
    (pkg / "controller.go").write_text(_KNP_CONTROLLER_QUEUE)  # one place, not two
    (pkg / "dnsagent.go").write_text(_KNP_DNS_QUEUE)
    with pytest.raises(_build.KubeBuildError, match=r"expected 2 .*controller\.go, found 1"):
        _build.substitute_nfqueue(tmp_path, "0.9.9")


def test_the_agent_socket_root_is_claimed_only_when_nobody_else_uses_it(tmp_path: Path) -> None:
    from kube_harness._host import State, claim_host_socket_root, claimed_host_socket_root

    state = State(tmp_path / "state.json")
    fresh = tmp_path / "run" / "spire" / "agent-sockets"
    claim_host_socket_root(state, fresh)
    assert claimed_host_socket_root(fresh) == fresh
    assert str(fresh) in state.data["dirs"]  # down removes it, leftovers reports it until then

    foreign = tmp_path / "foreign"
    (foreign / "someone-elses-agent").mkdir(parents=True)
    claim_host_socket_root(state, foreign)
    assert claimed_host_socket_root(foreign) is None
    assert str(foreign) not in state.data["dirs"]
    assert [p.name for p in foreign.iterdir()] == ["someone-elses-agent"]


def test_an_image_is_named_by_its_short_name_or_given_itself() -> None:
    from kube_harness._images import image_named, image_set, spire_image

    assert image_named("spire-agent") == image_set()["spire-agent"]
    other = spire_image("spire-agent", "1.13.0")
    assert image_named(other) is other and other.ref.endswith("/spire-agent:1.13.0")
    with pytest.raises(KeyError, match=r"no test image named 'nope'; the test images: pause, "):
        image_named("nope")
