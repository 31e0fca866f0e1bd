"""`deploy rotate` against real local deployments: every step really happens (SPIRE's
states and bundles say so afterwards), the deployment still verifies green, a rotation
left half done resumes from what SPIRE reports, and what SPIRE cannot do is refused
before anything changes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from spire_fabric.deploy import attach
from spire_fabric.testing import short_tempdir
from spire_fabric.verify import authorities_report

from .conftest import Deploy, free_port_base

ALL_STEPS = [
    "prepare", "wait for every holder", "activate", "taint", "wait for renewals", "revoke",
    "wait until gone",
]  # fmt: skip


@pytest.fixture(scope="module")
def basic() -> Iterator[Deploy]:
    deploy = Deploy(short_tempdir("sf-rot-") / "state", free_port_base())
    try:
        deploy.up("--topology", "basic")
        yield deploy
    finally:
        deploy.run("down", "--purge")


def test_x509_rotation_with_revoke_leaves_a_green_deployment_on_the_new_authority(
    basic: Deploy,
) -> None:
    with attach("basic", state_dir=basic.state_dir) as d:
        first = authorities_report(d).server("spire-server").authority("x509", "active")
    assert first is not None
    out = basic.run("rotate", "x509", "--server", "spire-server", "--revoke", "--output", "json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [s["name"] for s in result["steps"]] == ALL_STEPS
    assert {s["outcome"] for s in result["steps"]} == {"done"}
    assert all(s["seconds"] >= 0 for s in result["steps"])
    assert result["old_authority_id"] == first.authority_id

    with attach("basic", state_dir=basic.state_dir) as d:
        s = authorities_report(d).server("spire-server")
    active, old = s.authority("x509", "active"), s.authority("x509", "old")
    assert active is not None and active.authority_id == result["new_authority_id"]
    assert (active.agents, active.workload_svids) == (1, 1)
    assert old is not None and old.authority_id == first.authority_id and not old.in_bundle
    report = basic.verify()
    assert report.ok, [(c.id, c.detail) for c in report.failed]


def test_a_rotation_left_prepared_resumes_and_a_finished_one_is_not_redone(
    basic: Deploy,
) -> None:
    with attach("basic", state_dir=basic.state_dir) as d, d.server("spire-server") as api:
        by_hand = api.prepare_authority("jwt")
    out = basic.run("rotate", "jwt", "--server", "spire-server", check=True)
    assert "prepare: skipped, resumed: the rotation is prepared" in out.stdout
    assert f"{by_hand.authority_id} is active" in out.stdout

    # finished without --revoke; --revoke now only revokes what that rotation left
    again = json.loads(basic.run("rotate", "jwt", "--server", "spire-server", "--revoke",
                                 "--output", "json", check=True).stdout)  # fmt: skip
    outcomes = {s["name"]: s["outcome"] for s in again["steps"]}
    assert outcomes == {"prepare": "skipped", "activate": "skipped", "revoke": "done",
                        "wait until gone": "done"}  # fmt: skip
    assert again["new_authority_id"] == by_hand.authority_id
    with attach("basic", state_dir=basic.state_dir) as d, d.server("spire-server") as api:
        assert [k.key_id for k in api.get_bundle().jwt_authorities] == [by_hand.authority_id]


def test_revoke_under_an_upstream_is_explained_and_a_peer_gets_the_new_key(
    enterprise: Deploy,
) -> None:
    with attach("enterprise", state_dir=enterprise.state_dir) as d:
        with d.server("spire-downstream-server") as api:
            before = api.get_authority_state("x509")
        # under an upstream authority --revoke is no error: the rotation happens, the
        # revoke step says what it cannot do there and points to rotate root
        under = enterprise.run("rotate", "x509", "--server", "spire-downstream-server",
                               "--revoke", "--output", "json")  # fmt: skip
        assert under.returncode == 0, under.stderr
        steps = {s["name"]: s for s in json.loads(under.stdout)["steps"]}
        assert steps["revoke"]["outcome"] == "skipped"
        assert "cannot taint or revoke it" in steps["revoke"]["detail"]
        assert "rotate root --revoke" in steps["revoke"]["detail"]
        assert "wait until gone" not in steps
        with d.server("spire-downstream-server") as api:
            after = api.get_authority_state("x509")
        assert before.active is not None and after.active is not None
        assert after.active.authority_id != before.active.authority_id
        unknown = enterprise.run("rotate", "jwt", "--server", "spire-server")
        assert unknown.returncode == 2
        assert "--server 'spire-server': no such server in topology 'enterprise'" in (
            unknown.stderr)  # fmt: skip

        out = enterprise.run("rotate", "jwt", "--server", "spire-upstream-server",
                             "--output", "json", check=True)  # fmt: skip
        new_key = json.loads(out.stdout)["new_authority_id"]
        with d.server("spire-downstream-server") as peer:
            copy = peer.get_federated_bundle("enterprise-root.org")
        assert new_key in {k.key_id for k in copy.jwt_authorities}
