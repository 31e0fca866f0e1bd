"""`deploy authorities` and `authorities_report` against real local deployments.

The counts are checked to move: after a prepare and an activation the SVIDs still chain
to the old authority; once it is tainted, SPIRE's agents renew, and the report must see
the agent and the workload on the new one. A federated peer's copy is checked to differ
right after a prepare (the peer has not fetched it yet) and to equal the bundle once the
peer refreshed it. Each module-scoped deployment is this module's own: the tests change
its authorities.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cryptography import x509

from spire_fabric._wait import wait_until
from spire_fabric.deploy import attach
from spire_fabric.testing import short_tempdir
from spire_fabric.verify import AuthoritiesReport, authorities_report

from .conftest import Deploy, free_port_base


@pytest.fixture(scope="module")
def basic() -> Iterator[Deploy]:
    deploy = Deploy(short_tempdir("sf-auth-") / "state", free_port_base())
    try:
        deploy.up("--topology", "basic")
        yield deploy
    finally:
        deploy.run("down", "--purge")


def _skid(cert: x509.Certificate) -> str:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()


def _moved(report: AuthoritiesReport, kind: str, new: str) -> bool:
    s = report.server("spire-server")
    active, old = s.authority(kind, "active"), s.authority(kind, "old")  # type: ignore[arg-type]
    assert active is not None and old is not None
    agents_done = kind == "jwt" or (active.agents, old.agents) == (1, 0)
    return active.authority_id == new and agents_done and (
        active.workload_svids, old.workload_svids) == (1, 0)  # fmt: skip


def test_counts_move_to_the_new_authority_once_the_old_one_is_tainted(basic: Deploy) -> None:
    with attach("basic", state_dir=basic.state_dir) as d:
        before = authorities_report(d).server("spire-server")
        first = before.authority("x509", "active")
        assert first is not None and before.authority("x509", "prepared") is None
        assert (first.agents, first.workload_svids, first.in_bundle) == (1, 1, True)
        jwt_first = before.authority("jwt", "active")
        assert jwt_first is not None and jwt_first.workload_svids == 1
        assert [a.agent for a in before.agents] == ["spire-agent"]
        assert before.agents[0].authority_id == first.authority_id
        assert before.workloads[0].x509_authority_id == first.authority_id
        assert before.workloads[0].jwt_key_id == jwt_first.authority_id
        assert before.upstream == () and before.peers == ()

        with d.server("spire-server") as api:
            prepared = api.prepare_authority("x509")
            now = authorities_report(d).server("spire-server")
            row = now.authority("x509", "prepared")
            assert row is not None and row.authority_id == prepared.authority_id
            assert (row.in_bundle, row.tainted, row.agents, row.workload_svids) == (
                True, False, 0, 0)  # fmt: skip

            api.activate_authority(prepared.authority_id, "x509")
            now = authorities_report(d).server("spire-server")
            active, old = now.authority("x509", "active"), now.authority("x509", "old")
            assert active is not None and active.authority_id == prepared.authority_id
            assert old is not None and old.authority_id == first.authority_id
            # activation alone moves nothing: what was signed stays signed by the old one
            assert (old.agents, old.workload_svids, active.agents, active.workload_svids) == (
                1, 1, 0, 0)  # fmt: skip

            api.taint_authority(first.authority_id, "x509")
            def renewed() -> AuthoritiesReport | None:
                report = authorities_report(d)
                return report if _moved(report, "x509", prepared.authority_id) else None

            after = wait_until(
                renewed, 60, "the agent and the workload renewed onto the new X.509 authority"
            )
            old = after.server("spire-server").authority("x509", "old")
            assert old is not None and old.tainted and old.in_bundle

            jwt_new = api.prepare_authority("jwt")
            api.activate_authority(jwt_new.authority_id, "jwt")
            api.taint_authority(jwt_first.authority_id, "jwt")
            wait_until(
                lambda: _moved(authorities_report(d), "jwt", jwt_new.authority_id),
                60, "the workload's JWT-SVID signed by the new key",
            )  # fmt: skip


def test_cli_prints_the_same_facts_as_the_library(basic: Deploy) -> None:
    with attach("basic", state_dir=basic.state_dir) as d:
        library = authorities_report(d)
    out = basic.run("authorities", "--output", "json", check=True)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["deployment"] == "basic" and shown["target"] == "local"
    (server,) = shown["servers"]
    ids = {(a["kind"], a["slot"]): a["authority_id"] for a in server["authorities"]}
    expected = library.server("spire-server")
    assert ids == {(a.kind, a.slot): a.authority_id for a in expected.authorities}
    assert server["workloads"][0]["workload"] == "example-app"

    text = basic.run("authorities", "--server", "spire-server", check=True).stdout
    assert "authorities basic on local" in text
    active = expected.authority("x509", "active")
    assert active is not None
    assert f"signed by {active.authority_id}" in text  # the agent's line
    assert "workload example-app: X.509-SVID by " + active.authority_id in text
    html = library._repr_html_()
    assert f"<code>{active.authority_id}</code>" in html and "1 workloads" in html

    refused = basic.run("authorities", "--server", "nope")
    assert refused.returncode == 2
    assert "no server 'nope' in topology 'basic'; its servers: spire-server" in refused.stderr


def test_a_peer_copy_differs_after_a_prepare_until_the_peer_refreshes(enterprise: Deploy) -> None:
    up_name, down_name = "spire-upstream-server", "spire-downstream-server"
    with attach("enterprise", state_dir=enterprise.state_dir) as d:
        report = authorities_report(d)
        for s in report.servers:
            (peer,) = s.peers
            assert (peer.held, peer.equal, peer.missing, peer.extra) == (True, True, (), ())
        # an upstream authority signs every X.509 authority: its root is in the bundle
        down = report.server(down_name)
        intermediate = x509.load_pem_x509_certificate(
            (enterprise.state_dir / "ca" / "downstream-regional-intermediate.crt").read_bytes()
        )
        (upstream,) = down.upstream
        assert upstream.subject_key_id == _skid(intermediate)
        assert (upstream.signs, upstream.in_bundle) == (("active",), False)
        active = down.authority("x509", "active")
        agents = {a.name for a in d.topology.agents if a.server == down_name}
        served = [w for w in d.topology.workloads if w.agent in agents]
        assert active is not None and (active.agents, active.workload_svids) == (
            len(agents), len(served))  # fmt: skip

        with d.server(up_name) as api:
            new_key = api.prepare_authority("jwt")
        copy = authorities_report(d, [up_name]).server(up_name).peers[0]
        assert copy.peer == down_name
        missing = (f"jwt:{new_key.authority_id}",)
        assert (copy.held, copy.equal, copy.missing) == (True, False, missing)

        with d.server(down_name) as peer_api:
            peer_api.refresh_bundle("enterprise-root.org")
        wait_until(
            lambda: authorities_report(d, [up_name]).server(up_name).peers[0].equal,
            30, f"{down_name}'s copy of enterprise-root.org holds the prepared JWT key",
        )  # fmt: skip
        shown = json.loads(enterprise.run("authorities", "--output", "json", check=True).stdout)
        assert [s["server"] for s in shown["servers"]] == [up_name, down_name]
        assert all(p["equal"] for s in shown["servers"] for p in s["peers"])
