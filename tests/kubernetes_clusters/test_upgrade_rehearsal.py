"""Issue 23's rolling-upgrade rehearsal on the real clusters: the enterprise preset up at
SPIRE 1.13.0, then its servers raised to the pinned 1.13.3 through `up`, then its agents,
each under the failover drills' continuous TrafficLoad, with 0 failed requests.

Run on demand, not by the test command (`scripts/test`):

    SPIRE_FABRIC_KUBE_TESTS=1 SPIRE_FABRIC_UPGRADE_REHEARSAL=1 .venv/bin/python -m pytest \\
        -p no:randomly -s tests/kubernetes_clusters/test_upgrade_rehearsal.py

Why apart: it needs a second SPIRE release (1.13.0, built from its module: about 4 minutes
cold, then cached) and an enterprise deployment of its own (about 7 minutes), which the
test command's 75-minute budget does not hold; its last run's numbers are in
docs/high-availability.md. Without the variable this file is not collected (conftest), so
the test command neither runs nor skips it.

`disable_migration`: SPIRE's SQL datastore migrates the shared schema when a newer server
starts on an older schema, and `disable_migration` keeps the not-yet-upgraded replicas from
doing that on a downgrade path. Between 1.13.0 and 1.13.3 the schema version is the same
(23 in both, pkg/server/datastore/sqlstore/migration.go), so the new replica only stamps
the newer code version; the rehearsal checks that both replicas run through the roll
without a datastore error instead of rendering a setting this hop does not use.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from kubernetes_clusters._kube import DOWNSTREAM, Kube
from kubernetes_clusters.failover_drills import HA_NS, HA_SERVER, _wait_green
from kubernetes_clusters.test_installer import KubeDeploy

pytestmark = pytest.mark.timeout(2400)

OLD = "1.13.0"
REPORT = Path("/tmp/upgrade-rehearsal.json")


def _images(version: str) -> dict[str, str]:
    """The server and agent image references of one SPIRE release, loaded into every node
    of both clusters (the release's binaries built first if they are not cached)."""
    from kube_harness import CLUSTERS, load_image
    from kube_harness._images import spire_image

    from spire_fabric.runtime.binaries import ensure_spire

    ensure_spire(version=version)
    refs = {}
    for role, program in (("server", "spire-server"), ("agent", "spire-agent")):
        for spec in CLUSTERS:
            refs[role] = load_image(spec.name, spire_image(program, version), say=lambda _: None)
    return refs


def _at(installer: KubeDeploy, server: str, agent: str) -> KubeDeploy:
    """The same deployment, `up` with these server and agent images (later flags win)."""
    images = ["--image", f"server={server}", "--image", f"agent={agent}"]
    return KubeDeploy(installer.state_dir, [*installer.extra, *images])


def _pod_images(k: Kube, ns: str, selector: str) -> dict[str, str]:
    """uid -> "name: image" of each live server pod's spire-server container."""
    out = {}
    for p in k.core.list_namespaced_pod(ns, label_selector=selector).items:
        if p.metadata.deletion_timestamp is None:
            image = next(c.image for c in p.spec.containers if "/spire-server:" in c.image)
            out[p.metadata.uid] = f"{p.metadata.name}: {image}"
    return out


def test_servers_then_agents_upgrade_1_13_0_to_1_13_3_under_load_fails_no_request(
    kubes: dict[str, Kube], tmp_path: Path
) -> None:
    from drill.failover import NewWorkload, window_of
    from drill.load import TrafficLoad
    from kube_harness import installer_args, load_installer_images

    from spire_fabric.deploy import attach
    from spire_fabric.runtime.binaries import SPIRE_VERSION as NEW
    from spire_fabric.runtime.core.versions import load_versions

    old, new = _images(OLD), _images(NEW)
    load_installer_images(say=lambda _: None)
    base = KubeDeploy(tmp_path / "enterprise", installer_args())
    k = kubes[DOWNSTREAM]
    servers = f"app.kubernetes.io/name={HA_SERVER}"
    report: dict[str, Any] = {"from": OLD, "to": NEW}

    def save() -> None:
        REPORT.write_text(json.dumps(report, indent=2))

    t0 = time.monotonic()
    _at(base, old["server"], old["agent"]).ok("up", "--topology", "enterprise")
    try:
        green = _wait_green(base, timeout=300)
        assert green["ok"], [c for c in green["checks"] if not c["ok"]]
        report["up_at_old_s"] = round(time.monotonic() - t0, 1)
        assert set(load_versions(base.state_dir).values()) == {OLD}
        assert all(i.endswith(f":{OLD}") for i in _pod_images(k, HA_NS, servers).values())

        # SPIRE's order, enforced by `up`: agents before servers is refused, nothing changes
        before = _pod_images(k, HA_NS, servers)
        refused = _at(base, old["server"], new["agent"]).run("up", "--topology", "enterprise")
        assert refused.returncode != 0, refused.stdout[-2000:]
        assert "upgrade the servers first" in refused.stdout + refused.stderr
        assert _pod_images(k, HA_NS, servers) == before
        assert set(load_versions(base.state_dir).values()) == {OLD}

        with attach("enterprise", state_dir=base.state_dir) as d:
            load = TrafficLoad(d, pause=0.2, warmup=240)
            load.start()
            try:
                for step, server, agent in (("servers", new["server"], old["agent"]),
                                            ("agents", new["server"], new["agent"])):  # fmt: skip
                    mark, t1 = load.report(), time.monotonic()
                    up = _at(base, server, agent).ok("up", "--topology", "enterprise")
                    up_s = time.monotonic() - t1
                    with NewWorkload(d, f"u{step[0]}") as fresh:
                        arrival = fresh.wait_identity(timeout=240)
                    green = _wait_green(base, timeout=300)
                    window = window_of(mark, load.report())
                    pods = _pod_images(k, HA_NS, servers)
                    report[step] = {"up_s": round(up_s, 1),
                                    "time_to_green_s": round(time.monotonic() - t1, 1),
                                    "verify_ok": green["ok"], "load": window,
                                    "new_workload": arrival.__dict__,
                                    "versions": load_versions(base.state_dir),
                                    "server_pods": sorted(pods.values())}  # fmt: skip
                    save()
                    print(f"upgrade {step}: {window['requests']} requests, "
                          f"{window['failures']} failed in {window['seconds']} s; "
                          f"up {up_s:.1f} s", flush=True)  # fmt: skip
                    assert " 0 failed" in up.stdout, up.stdout[-4000:]
                    assert green["ok"], [c for c in green["checks"] if not c["ok"]]
                    assert window["failures"] == 0, window
                    assert arrival.jwt_refused_first == 0, arrival
                    versions = load_versions(base.state_dir)
                    want_agents = NEW if step == "agents" else OLD
                    assert all(v == (NEW if key.startswith("server/") else want_agents)
                               for key, v in versions.items()), versions  # fmt: skip
                    assert all(i.endswith(f":{NEW}") for i in pods.values()), pods
            finally:
                total = load.stop()
                report["load_total"] = total.to_json()
                save()
        print(f"upgrade rehearsal: {total.summary()}")
    finally:
        down = base.run("down", "--purge", timeout=600)
        assert down.returncode == 0, down.stdout + down.stderr
