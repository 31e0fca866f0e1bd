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
    API,
    GATEWAY,
    PROCESSOR,
    UPSTREAM_CLIENT,
    TrafficLoad,
    present_jwt,
    present_x509,
)
from drill.verdicts import VIEWS, keep, sdk_accepts_jwt, sdk_accepts_x509, view_peer

from spire_fabric.testing import short_tempdir
from spire_fabric.verify._authorities import skid

from .conftest import Deploy, free_port_base

DOWNSTREAM, UPSTREAM = "spire-downstream-server", "spire-upstream-server"
STEPS: tuple[tuple[str, ...], ...] = (
    ("x509", "--server", DOWNSTREAM, "--revoke"),
    ("jwt", "--server", DOWNSTREAM, "--revoke"),
    ("x509", "--server", UPSTREAM, "--revoke"),
    ("jwt", "--server", UPSTREAM, "--revoke"),
    ("root", "--revoke"),
)


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
    for step in STEPS:
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
        kept = keep(d)
        # positive control: before the drill every verifier accepts what was kept
        for workload in VIEWS.values():
            peer, bundles = view_peer(d, workload)
            with peer:
                for token, audience in kept.jwts.values():
                    assert peer.verify_jwt(token, audience).accepted
                    assert sdk_accepts_jwt(bundles, token.token, audience) == "accepted"
                for svid in kept.x509s.values():
                    assert peer.verify_x509(svid).accepted
                    assert sdk_accepts_x509(bundles, svid) == "accepted"

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
        print(f"drill: {drill_seconds:.1f} s for {len(STEPS)} rotations; load: "
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

        # no revoked JWT key or root in any bundle or federated copy
        revoked = {before[s]["jwt"][0] for s in (DOWNSTREAM, UPSTREAM)}
        for server in (DOWNSTREAM, UPSTREAM):
            with d.server(server) as api:
                own = api.get_bundle()
                held = [own] + [api.get_federated_bundle(td) for td in VIEWS
                                if td != str(own.trust_domain)]  # fmt: skip
            for bundle in held:
                keys = {k.key_id for k in bundle.jwt_authorities}
                assert not keys & revoked, (server, bundle.trust_domain, keys & revoked)
                roots = {skid(a.certificate) for a in bundle.x509_authorities}
                assert skid(old_root) not in roots, (server, bundle.trust_domain)
                assert roots, (server, bundle.trust_domain)

        # what was signed by the revoked JWT keys is refused by both trust domains' views
        # (our SDK and go-spiffe); fresh credentials are accepted by the same verifiers
        fresh = keep(d)
        for td, workload in VIEWS.items():
            peer, bundles = view_peer(d, workload)
            with peer:
                for jwt_td, (token, audience) in kept.jwts.items():
                    new = fresh.jwts[jwt_td][0]
                    verdict = peer.verify_jwt(token, audience)
                    assert not verdict.accepted, (td, verdict)
                    assert "no JWT authority" in verdict.output, verdict.output
                    sdk = sdk_accepts_jwt(bundles, token.token, audience)
                    assert sdk.startswith("refused") and "no JWT authority" in sdk, sdk
                    assert peer.verify_jwt(new, audience).accepted
                    assert sdk_accepts_jwt(bundles, new.token, audience) == "accepted"
                # the X.509-SVIDs minted under the revoked root, and fresh ones
                for svid_td, svid in kept.x509s.items():
                    verdict = peer.verify_x509(svid)
                    assert not verdict.accepted, (td, svid_td, verdict)
                    assert "could not verify leaf certificate" in verdict.output, verdict.output
                    assert sdk_accepts_x509(bundles, svid).startswith("refused"), (td, svid_td)
                    new_svid = fresh.x509s[svid_td]
                    assert peer.verify_x509(new_svid).accepted, (td, svid_td)
                    assert sdk_accepts_x509(bundles, new_svid) == "accepted", (td, svid_td)

        # ... and by the running services of downstream.example.org that take JWT-SVIDs
        # (the gateway does not tell a caller why; the API names the missing key)
        for caller, target, td, why in (
            (PROCESSOR, API, "downstream.example.org", b"no JWT authority"),
            (UPSTREAM_CLIENT, GATEWAY, "enterprise-root.org", b"credentials not accepted"),
        ):
            status, body = present_jwt(d, caller, target, kept.jwts[td][0].token)
            assert status == 401 and why in body, (target, status, body)
            status, body = present_jwt(d, caller, target, fresh.jwts[td][0].token)
            assert status in (200, 201), (target, status, body)
        # the running API refuses the old root's SVID in the handshake, takes the new one
        _, upstream_view = view_peer(d, UPSTREAM_CLIENT)
        refused = present_x509(d, kept.x509s["enterprise-root.org"], upstream_view, API)
        assert not refused.startswith("HTTP"), refused
        accepted = present_x509(d, fresh.x509s["enterprise-root.org"], upstream_view, API)
        assert accepted == "HTTP 200", accepted

        print("drill timings: " + json.dumps({
            "steps": [{"rotate": s, "seconds": round(t, 1),
                       "substeps": {n: round(x, 1) for n, x in sub}} for s, t, sub in timings],
            "drill_seconds": round(drill_seconds, 1), "load": report.to_json(),
            "processor_cycles": {"ok": cycles_ok, "failed": cycles_failed}}))  # fmt: skip
    finally:
        deploy.run("down", "--purge")
        shutil.rmtree(tmp, ignore_errors=True)
