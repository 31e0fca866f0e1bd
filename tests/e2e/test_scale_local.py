"""The scale topology on the local target: 20 agents and 200 workloads, from nothing to a
green verify and back to nothing, through the CLI a user runs. Not timed here (the time is
benchmarks/bench_scale_up.py's); it proves that size works at all: every agent attests
(SPIRE's per-IP attestation limit is lifted locally, docs/local-target.md), every entry
reaches its agent as a real SVID, and the running workloads answer as themselves."""

from __future__ import annotations

import random
import time

from spire_fabric.runtime.local.supervisor import pid_alive
from spire_fabric.testing import short_tempdir
from spire_fabric.topology import parse_scale

from .conftest import Deploy, _free

SIZE = "agents=20,workloads=200,running=5"


def _scale_port_base() -> int:
    """A port base under which every port of the scale topology is free."""
    params = parse_scale(SIZE)
    offsets = [
        *(p - 31000 for p in (8080, 8081, 8443, 9988)),  # the server
        *(8180 + i - 31000 for i in range(params.agents)),  # agents' health
        *(30443 + i - 31000 for i in range(params.running)),  # running workloads
    ]
    bases = list(range(41000, 60000, 1000))
    random.shuffle(bases)
    for base in bases:
        if all(_free(base + off) for off in offsets):
            return base
    raise RuntimeError("no free port base for the scale topology")


def test_twenty_agents_and_two_hundred_workloads_come_up_green_and_go_away() -> None:
    deploy = Deploy(short_tempdir("sf-e2e-scale-") / "state", _scale_port_base())
    try:
        deploy.up("--topology", f"scale:{SIZE}")
        deployment = deploy.deployment()
        report = deploy.verify()
        assert report.ok, [f"{c.id}: {c.detail}" for c in report.failed][:10]
        ids = {c.id for c in report.checks}
        assert {f"agent-attested:agent-{i}" for i in range(20)} <= ids
        assert {f"workload-svid:workload-{i}" for i in range(200)} <= ids
        assert {f"workload-health:workload-{i}" for i in range(5)} <= ids
        assert not any(i.startswith("workload-health:workload-5") for i in ids)
        entries = next(c for c in report.checks if c.id == "entries:spire-server")
        assert entries.detail.startswith("200 entries as expected"), entries.detail
        pids = [s.pid for s in deployment.supervisor.states().values() if s.pid]
        pids.append(deployment.supervisor.pid)
        assert len(pids) >= 1 + 20 + 5
    finally:
        down = deploy.run("down", "--purge")
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 10  # `down` signals; the kernel reaps a moment later
    while [p for p in pids if pid_alive(p)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if pid_alive(p)]
