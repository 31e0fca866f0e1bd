"""The HA checks' verdicts over several replicas.

A double stands in for the deployment because the faults judged here (a replica that is
not ready, replicas that disagree, two or no controller-manager leaders) cannot be made
on demand by real SPIRE on a laptop; the same check bodies run against real SPIRE in
tests/e2e/test_enterprise_up_verify_down.py and on the clusters.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from ha_topology import enterprise_ha

from spire_fabric.runtime.deployment import ServerReplica
from spire_fabric.verify._replica_checks import _entries, _one_leader, _ready, replica_checks
from spire_fabric.verify._report import CheckFailed

T = enterprise_ha()
DOWN = T.server("spire-downstream-server")


@dataclass
class Api:
    entries: int

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def count_entries(self, timeout: float) -> int:
        return self.entries


@dataclass
class Double:
    replicas: tuple[ServerReplica, ...]
    counts: dict[str, int]
    target: str = "kubernetes"
    topology: object = T

    def server_replicas(self, name: str) -> tuple[ServerReplica, ...]:
        return self.replicas

    def replica_server(self, name: str, replica: str) -> Api:
        return Api(self.counts[replica])


A, B = f"{DOWN.name}-0", f"{DOWN.name}-1"


def test_enterprise_gets_the_ha_checks_for_its_downstream_server_only():
    ids = [i for i, _, _ in replica_checks(Double((), {}))]  # type: ignore[arg-type]
    assert ids == [
        f"{kind}:{DOWN.name}"
        for kind in ("replicas-ready", "replicas-bundle", "replicas-authority",
                     "replicas-entries", "controller-manager-leader")
    ]  # fmt: skip
    local = Double((), {}, target="local")
    assert list(replica_checks(local)) == []  # type: ignore[arg-type]


def test_a_replica_not_ready_is_named():
    d = Double((ServerReplica(A, True), ServerReplica(B, False)), {})
    with pytest.raises(CheckFailed, match=f"1/2 replicas ready \\({A}\\); not ready: {B}"):
        _ready(d, DOWN, 2)  # type: ignore[arg-type]
    d = Double((ServerReplica(A, True), ServerReplica(B, True)), {})
    assert _ready(d, DOWN, 2) == f"2/2 ready: {A}, {B}"  # type: ignore[arg-type]


def test_replicas_counting_different_entries_fail():
    ready = (ServerReplica(A, True), ServerReplica(B, True))
    with pytest.raises(CheckFailed, match=f"{A} counts 7, {B} counts 6"):
        _entries(Double(ready, {A: 7, B: 6}), DOWN)  # type: ignore[arg-type]
    assert _entries(Double(ready, {A: 7, B: 7}), DOWN) == "7 entries on each of 2 replicas"  # type: ignore[arg-type]


@pytest.mark.parametrize(("leaders", "verdict"), [((False, False), "no replica"),
                                                   ((True, True), f"{A}, {B}")])  # fmt: skip
def test_not_exactly_one_leader_fails(leaders, verdict):
    d = Double(tuple(ServerReplica(n, True, le) for n, le in zip((A, B), leaders, strict=True)), {})
    with pytest.raises(CheckFailed, match=f"^{verdict} holds the controller manager's leader"):
        _one_leader(d, DOWN)  # type: ignore[arg-type]


def test_one_leader_passes():
    d = Double((ServerReplica(A, True, False), ServerReplica(B, True, True)), {})
    assert _one_leader(d, DOWN) == f"{B} leads; 1 standing by"  # type: ignore[arg-type]
