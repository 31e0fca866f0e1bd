"""The key-compromise drill under load, on the local target (issue 22, item 4).

An enterprise deployment carries continuous traffic on every path a rotation can break
(`drill.load`: external client → gateway, SPIFFE mTLS clients of both trust domains,
data-processor posting results with JWT-SVIDs, cross-domain JWT validation, and the real
data-processor's own cycles) while `deploy rotate` replaces and revokes the X.509 and JWT
authorities of both servers, then the Enterprise Root CA itself (`rotate root --revoke`).
Then: not one request failed (and enough were made for that to mean something), `verify`
is green, every server has one new active authority per kind, no revoked key or root is
left in any bundle or federated copy, and credentials kept from before (a JWT-SVID signed
by each revoked JWT key, an X.509-SVID of each trust domain minted under the revoked root)
are refused by the workloads of both trust domains (our SDK with each workload's own
bundles, and the running services) and by a go-spiffe peer holding the same bundles, while
fresh ones are accepted by the same verifiers.

Each step's time, the drill's time and the request counts are printed (run with ``-s``);
docs/runbook-local-timings.md records a measured run.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from drill.load import (
    DRILL_STEPS,
    PROCESSOR,
    TrafficLoad,
)
from drill.verdicts import (
    assert_kept_refused_and_fresh_accepted,
    assert_nothing_revoked_is_held,
    keep_accepted,
)

from spire_fabric.testing import short_tempdir

from .conftest import Deploy, free_port_base

DOWNSTREAM, UPSTREAM = "spire-downstream-server", "spire-upstream-server"


def _authorities(deploy: Deploy) -> dict[str, dict[str, list[str]]]:
    """server -> kind -> the IDs of its active authorities, from `authorities --output json`."""
    report = json.loads(deploy.run("authorities", "--output", "json", check=True).stdout)
    out: dict[str, dict[str, list[str]]] = {}
    for s in report["servers"]:
        assert not s["error"], s
        for a in s["authorities"]:
            if a["slot"] == "active":
                out.setdefault(s["server"], {}).setdefault(a["kind"], []).append(
                    a["authority_id"])  # fmt: skip
    return out


def _run_steps(deploy: Deploy) -> list[tuple[str, float, list[tuple[str, float]]]]:
    timings = []
    for step in DRILL_STEPS:
        start = time.monotonic()
        out = deploy.run("rotate", *step, "--output", "json", check=True, timeout=900)
        seconds = time.monotonic() - start
        result = json.loads(out.stdout)
        timings.append((" ".join(step), seconds,
                        [(s["name"], s["seconds"]) for s in result["steps"]]))  # fmt: skip
        print(f"drill: rotate {' '.join(step)}: {seconds:.1f} s ("
              + ", ".join(f"{n} {s:.1f}" for n, s in timings[-1][2]) + ")", flush=True)
    return timings


@pytest.mark.timeout(1800)
def test_key_compromise_drill_under_load_fails_no_request_and_revoked_keys_are_refused() -> None:
    tmp = short_tempdir("sf-drill-")
    deploy = Deploy(tmp / "state", free_port_base())
    try:
        deploy.up()
        d = deploy.deployment()
        before = _authorities(deploy)
        old_root = d.root_ca()
        assert old_root is not None
        kept = keep_accepted(d)  # with the positive control

        processor_log = deploy.state_dir / "logs" / f"{PROCESSOR}.log"
        load = TrafficLoad(d)
        load.start()
        # the real processor's cycles from here on (start-up is not the drill)
        offset = processor_log.stat().st_size
        drill_start = time.monotonic()
        try:
            timings = _run_steps(deploy)
        finally:
            report = load.stop()
        drill_seconds = time.monotonic() - drill_start
        cycles = processor_log.read_bytes()[offset:].decode(errors="replace")
        cycles_ok, cycles_failed = cycles.count("outcome=ok"), cycles.count("outcome=FAILED")
        print(f"drill: {drill_seconds:.1f} s for {len(DRILL_STEPS)} rotations; load: "
              f"{report.summary()}; data-processor cycles ok={cycles_ok} "
              f"failed={cycles_failed}")  # fmt: skip

        # 0 failed requests, out of enough requests for that to mean something
        assert report.failures == 0, report.reasons()
        assert cycles_failed == 0, [line for line in cycles.splitlines() if "FAILED" in line]
        assert cycles.count("event=cycle") >= drill_seconds / 5 - 2  # its interval is 5 s
        for flow, count in report.flows.items():
            rate = 0.5 if flow == "external-create" else 2.0
            assert count.requests >= rate * drill_seconds, (flow, report.summary())

        verified = deploy.verify()
        assert verified.ok, [(c.id, c.detail) for c in verified.failed]

        # one new active authority per kind on each server
        after = _authorities(deploy)
        for server in (DOWNSTREAM, UPSTREAM):
            for kind in ("x509", "jwt"):
                assert len(after[server][kind]) == 1, after
                assert after[server][kind] != before[server][kind], (server, kind)

        # no revoked JWT key or root in any bundle or federated copy; kept credentials
        # refused everywhere, fresh ones accepted
        assert_nothing_revoked_is_held(d, {before[s]["jwt"][0] for s in (DOWNSTREAM, UPSTREAM)},
                                       old_root)  # fmt: skip
        assert_kept_refused_and_fresh_accepted(d, kept)

        print("drill timings: " + json.dumps({
            "steps": [{"rotate": s, "seconds": round(t, 1),
                       "substeps": {n: round(x, 1) for n, x in sub}} for s, t, sub in timings],
            "drill_seconds": round(drill_seconds, 1), "load": report.to_json(),
            "processor_cycles": {"ok": cycles_ok, "failed": cycles_failed}}))  # fmt: skip
    finally:
        deploy.run("down", "--purge")
        shutil.rmtree(tmp, ignore_errors=True)
