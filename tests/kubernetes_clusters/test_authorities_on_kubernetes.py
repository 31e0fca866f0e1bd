"""`deploy authorities` on the two real test clusters: the report comes through the same
`Deployment` interface (servers by port-forward, workloads' SVIDs fetched inside their
pods, the peers' copies), and says where this target cannot see (the agents' own SVIDs).
One enterprise deployment, brought up and removed by this module."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from kubernetes_clusters._kube import Kube
from kubernetes_clusters.test_installer import KubeDeploy

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def deployed(
    kubes: dict[str, Kube], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeDeploy]:
    from kube_harness import installer_args, load_installer_images

    load_installer_images(say=lambda _: None)
    deploy = KubeDeploy(tmp_path_factory.mktemp("kube") / "enterprise", installer_args())
    try:
        deploy.ok("up", "--topology", "enterprise")
        yield deploy
    finally:
        down = deploy.run("down", "--purge", timeout=600)
        assert down.returncode == 0, down.stdout + down.stderr


def test_the_authorities_report_on_kubernetes(deployed: KubeDeploy) -> None:
    report = json.loads(deployed.ok("authorities", "--output", "json").stdout)
    assert report["target"] == "kubernetes"
    servers = {s["server"]: s for s in report["servers"]}
    assert list(servers) == ["spire-upstream-server", "spire-downstream-server"]
    for s in servers.values():
        assert s["error"] == ""
        (active,) = [a for a in s["authorities"] if (a["kind"], a["slot"]) == ("x509", "active")]
        assert active["upstream_authority_subject_key_id"]  # the Enterprise Root hierarchy
        assert [p["equal"] for p in s["peers"]] == [True]
        assert s["agents"], "ListAgents named no agent"
        for agent in s["agents"]:  # the agent's own SVID is out of reach in its pods
            assert agent["authority_id"] == "" and agent["detail"], agent
        for w in s["workloads"]:
            assert w["detail"] == "", w
            assert w["x509_authority_id"] == active["authority_id"]
        assert active["workload_svids"] == len(s["workloads"])
    assert len(servers["spire-downstream-server"]["workloads"]) == 3
