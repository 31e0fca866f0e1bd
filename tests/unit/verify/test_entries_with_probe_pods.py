"""`entries:<server>` on Kubernetes while identity probe pods come and go (issue 23).

After failover drill (a), `entries:spire-upstream-server` stayed red under the drills' load,
with no entry wrong. The load polls upstream-client's identity every 2 s, and on Kubernetes
that is a probe pod each time (`WorkloadIdentity`): a pod with the workload's label in its
namespace, on the upstream cluster's single node, which the controller manager gives an
entry of its own a moment after the pod appears and drops after it goes. The plan matched
entries by (SPIFFE ID, parent) alone, so the probe's entry and the workload pod's, same ID
and same node, collided, and a probe seen before its entry was a missing one.

Why a double: the race needs the controller manager a moment behind a pod, which real
clusters give only by chance. The double answers the two reads the plan makes (the pods of
the cluster, the server's entries) with exactly the states the race leaves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from spire_fabric.render.kubernetes import PROBE_LABEL
from spire_fabric.render.kubernetes._common import LABEL_WORKLOAD
from spire_fabric.runtime.kubernetes._registrations import controller_manager_entries
from spire_fabric.runtime.kubernetes.deployment import KubernetesDeployment
from spire_fabric.server import Entry
from spire_fabric.topology import Topology, preset

T = preset("enterprise")
UP = "spire-upstream-server"
CLIENT = "upstream-client"


def _pod(uid: str, *, probe: bool = False, deleting: bool = False) -> SimpleNamespace:
    labels = {LABEL_WORKLOAD: CLIENT, **({PROBE_LABEL: CLIENT} if probe else {})}
    return SimpleNamespace(
        metadata=SimpleNamespace(
            uid=uid, labels=labels, deletion_timestamp="now" if deleting else None
        ),
        spec=SimpleNamespace(node_name="upstream-node"),
    )


@dataclass
class Core:
    pods: list[SimpleNamespace]

    def list_namespaced_pod(self, ns: str, label_selector: str = "") -> SimpleNamespace:
        return SimpleNamespace(items=self.pods)

    def list_pod_for_all_namespaces(self) -> SimpleNamespace:
        return SimpleNamespace(items=self.pods)

    def read_node(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(metadata=SimpleNamespace(uid="node-uid"))


@dataclass
class Server:
    entries: list[Entry]

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def list_entries(self, timeout: float) -> list[Entry]:
        return self.entries


@dataclass
class Cluster:
    pods: list[SimpleNamespace]
    entries: list[Entry] = field(default_factory=list)

    def deployment(self) -> KubernetesDeployment:
        cluster = self

        class Double(KubernetesDeployment):
            def __init__(self) -> None:  # none of the real one's access layer
                pass

            @property
            def topology(self) -> Topology:
                return T

            @property
            def clusters(self) -> dict[str, Any]:
                return {
                    c: SimpleNamespace(core=Core(cluster.pods))
                    for c in ("upstream-cluster", "downstream-cluster")
                }

            def server(self, name: str) -> Any:
                return Server(cluster.entries)

        return Double()


def _made(pods: list[SimpleNamespace]) -> list[Entry]:
    """The entries the controller manager holds once caught up with ``pods``, with IDs."""
    entries = controller_manager_entries(
        T, {"upstream-cluster": SimpleNamespace(core=Core(pods))}, UP
    )  # type: ignore[dict-item]
    return [dataclasses.replace(e, id=f"{UP}.{i}") for i, e in enumerate(entries)]


def _probe_entry(uid: str) -> Entry:
    (e,) = [e for e in _made([_pod(uid)]) if "pod-uid" in str(e.selectors)]
    return dataclasses.replace(e, id=f"{UP}.probe-{uid}")


def test_the_preset_registers_through_the_controller_manager() -> None:
    assert T.kubernetes.registration != "spire-api"


def test_caught_up_plan_is_empty() -> None:
    pods = [_pod("p1")]
    plan = Cluster(pods, _made(pods)).deployment().entry_plan(UP)
    assert not plan, [c.describe() for c in plan.changes]
    assert len(plan.unchanged) == 2  # the agents' node alias and upstream-client's pod


@pytest.mark.parametrize("entry_made", [False, True])
def test_a_probe_pod_on_the_same_node_does_not_make_the_plan_red(entry_made: bool) -> None:
    """A probe pod seen before the controller manager made its entry, or after: both are
    the controller manager's business; the workload pod's entry still matches."""
    regular = _made([_pod("p1")])
    entries = regular + ([_probe_entry("probe-1")] if entry_made else [])
    for order in (entries, list(reversed(entries))):  # whichever the server lists first
        plan = Cluster([_pod("p1"), _pod("probe-1", probe=True)], order).deployment().entry_plan(UP)
        assert not plan, [c.describe() for c in plan.changes]


def test_a_pod_being_deleted_whose_entry_is_gone_is_not_missing() -> None:
    pods = [_pod("p1"), _pod("p2", deleting=True)]
    plan = Cluster(pods, _made([_pod("p1")])).deployment().entry_plan(UP)
    assert not plan, [c.describe() for c in plan.changes]


def test_two_settled_pods_on_one_node_each_need_their_entry() -> None:
    """The key holds the pod UID: a settled pod without its entry is still red, also when
    another pod of the same workload on the same node has one."""
    pods = [_pod("p1"), _pod("p2")]
    plan = Cluster(pods, _made([_pod("p1")])).deployment().entry_plan(UP)
    assert [c.action for c in plan.changes] == ["create"]
    assert "pod-uid:p2" in str(plan.changes[0].entry.selectors)


def test_an_entry_of_no_pod_we_know_is_not_hidden_when_a_settled_pod_lacks_one() -> None:
    """A wrong entry (here: of the workload, but for a settled pod's UID with a wrong
    parent) is still a difference: only entries of pods in flux are left out."""
    (good,) = [e for e in _made([_pod("p1")]) if "pod-uid" in str(e.selectors)]
    wrong = dataclasses.replace(
        good,
        parent_id=type(good.parent_id).parse(
            "spiffe://enterprise-root.org/spire/agent/k8s_psat/upstream-cluster/other-node"
        ),
    )
    alias = [e for e in _made([_pod("p1")]) if "pod-uid" not in str(e.selectors)]
    plan = Cluster([_pod("p1")], [*alias, wrong]).deployment().entry_plan(UP)
    assert sorted(c.action for c in plan.changes) == ["create", "delete"]
