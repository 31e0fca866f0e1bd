"""`deploy rotate root --revoke` on a running enterprise deployment (real SPIRE, two
federated trust domains under one Enterprise Root): the new root reaches every bundle and
federated copy, every SVID moves to the new intermediates, the old root leaves every
bundle, and an X.509-SVID minted under the old root is refused by the workloads of both
trust domains; `verify` stays green. A second run resumes nothing and starts a new
generation; a run left after the switch resumes from what SPIRE reports."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cryptography import x509

from spire_fabric.deploy import attach
from spire_fabric.identity import X509Bundle, X509SvidError, verify_x509_svid
from spire_fabric.runtime.core import CaStore
from spire_fabric.testing import short_tempdir
from spire_fabric.verify._authorities import authority_key_id, skid

from .conftest import Deploy, free_port_base

ROOT_STEPS = [
    "new generation", "introduce new root", "wait for every holder",
    "bridge spire-upstream-server", "bridge spire-downstream-server", "promote generation",
    "switch spire-upstream-server", "switch spire-downstream-server", "taint old root",
    "wait for renewals", "revoke old root", "wait until gone", "retire old generation",
]  # fmt: skip
# one workload per trust domain: enterprise-root.org and downstream.example.org
WORKLOADS = ("upstream-client", "enterprise-api")


@pytest.fixture(scope="module")
def enterprise() -> Iterator[Deploy]:
    deploy = Deploy(short_tempdir("sf-root-") / "state", free_port_base())
    try:
        deploy.up()
        yield deploy
    finally:
        deploy.run("down", "--purge")


def _bundle_roots(d, server: str) -> set[str]:
    with d.server(server) as api:
        return {skid(a.certificate) for a in api.get_bundle().x509_authorities}


def _anchor_ids(deploy: Deploy) -> set[str]:
    """The roots `trust-anchor` prints, as an external client would read them."""
    pem = deploy.run("trust-anchor", check=True).stdout.encode()
    return {skid(c) for c in x509.load_pem_x509_certificates(pem)}


def test_root_rotation_with_revoke_leaves_only_the_new_root_and_refuses_old_svids(
    enterprise: Deploy,
) -> None:
    with attach("enterprise", state_dir=enterprise.state_dir) as d:
        old_root = d.root_ca()
        assert old_root is not None
        kept = {w: d.x509_context(w).default_svid for w in WORKLOADS}  # minted under old root
        for w, svid in kept.items():  # the positive control: they verify before
            verify_x509_svid(svid.cert_chain, d.x509_context(w).get_bundle_set())

    out = enterprise.run("rotate", "root", "--revoke", "--output", "json", timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [s["name"] for s in result["steps"]] == ROOT_STEPS
    assert {s["outcome"] for s in result["steps"]} == {"done"}
    assert result["old_root"] == skid(old_root) != result["new_root"]
    assert result["generation"] == 2

    report = json.loads(enterprise.run("authorities", "--output", "json", check=True).stdout)
    with attach("enterprise", state_dir=enterprise.state_dir) as d:
        new_root = d.root_ca()
        assert new_root is not None and skid(new_root) == result["new_root"]
        for s in d.topology.servers:
            assert _bundle_roots(d, s.name) == {result["new_root"]}, s.name
        for section in report["servers"]:
            assert section["peers"] and all(p["equal"] for p in section["peers"])
            leak = section["leaked_intermediate"]  # what a leaked intermediate means, stated
            assert leak["window_seconds"] > leak["ca_ttl_seconds"] > leak["svid_ttl_seconds"] > 0
            assert "rotate root --revoke" in leak["text"]
            active = [a for a in section["authorities"] if a["slot"] == "active"]
            assert sorted(a["kind"] for a in active) == ["jwt", "x509"]
            on_active = next(a for a in active if a["kind"] == "x509")["authority_id"]
            assert all(a["authority_id"] == on_active for a in section["agents"])
            assert all(w["x509_authority_id"] == on_active for w in section["workloads"])
            # the SVID the server serves its APIs with, re-signed after the taint (what
            # rotate root waits for on every replica of a server with replicas)
            served = d.replica_server_svid(section["server"], section["server"])
            assert authority_key_id(served[0]) == on_active, section["server"]
            td = d.topology.server(section["server"]).trust_domain
            verify_x509_svid(served, X509Bundle(td, (new_root,)))  # the new root alone
            with pytest.raises(X509SvidError):
                verify_x509_svid(served, X509Bundle(td, (old_root,)))
        for w in WORKLOADS:
            ctx = d.x509_context(w)
            held = {skid(c) for b in ctx.bundles.values() for c in b.x509_authorities}
            assert held == {result["new_root"]}, w
            for svid in kept.values():
                with pytest.raises(X509SvidError):
                    verify_x509_svid(svid.cert_chain, ctx.get_bundle_set())
            verify_x509_svid(ctx.default_svid.cert_chain, ctx.get_bundle_set())  # the new one does
        # the old generation's keys are gone; the CA store's current root is the new one
        store = CaStore(d.ca_directory)
        assert store.generations().current == 2 and store.generations().previous is None
        assert not (d.ca_directory / "gen-1").exists()
    report_verify = enterprise.verify()
    assert report_verify.ok, [(c.id, c.detail) for c in report_verify.failed]


def test_a_root_rotation_interrupted_after_the_switch_resumes_from_spire(
    enterprise: Deploy,
) -> None:
    """Without --revoke it stops tainted; then --revoke resumes: only the revoke runs."""
    first = json.loads(enterprise.run("rotate", "root", "--output", "json",
                                      check=True, timeout=600).stdout)  # fmt: skip
    assert first["generation"] == 3 and not first["revoked"]
    assert [s["name"] for s in first["steps"]] == ROOT_STEPS[:10]
    with attach("enterprise", state_dir=enterprise.state_dir) as d:
        with d.server("spire-downstream-server") as api:
            tainted = {skid(a.certificate): a.tainted for a in api.get_bundle().x509_authorities}
        assert tainted == {first["old_root"]: True, first["new_root"]: False}
        assert CaStore(d.ca_directory).generations().previous == 2  # kept until revoked
    assert _anchor_ids(enterprise) == {first["old_root"], first["new_root"]}  # both trusted

    again = json.loads(enterprise.run("rotate", "root", "--revoke", "--output", "json",
                                      check=True, timeout=600).stdout)  # fmt: skip
    outcomes = {s["name"]: s["outcome"] for s in again["steps"]}
    assert outcomes["new generation"] == "skipped"
    assert outcomes["bridge spire-upstream-server"] == "skipped"
    assert outcomes["switch spire-downstream-server"] == "skipped"
    assert outcomes["taint old root"] == "skipped"
    assert outcomes["revoke old root"] == "done"
    assert again["old_root"] == first["old_root"] and again["new_root"] == first["new_root"]
    with attach("enterprise", state_dir=enterprise.state_dir) as d:
        for s in d.topology.servers:
            assert _bundle_roots(d, s.name) == {first["new_root"]}
    assert _anchor_ids(enterprise) == {first["new_root"]}  # the revoked one is not printed


def test_rotate_root_bad_input_is_refused_before_anything_changes(enterprise: Deploy) -> None:
    with attach("enterprise", state_dir=enterprise.state_dir) as d:
        before = {s.name: _bundle_roots(d, s.name) for s in d.topology.servers}
        out = enterprise.run("rotate", "root", "--server", "spire-upstream-server")
        assert out.returncode == 2
        assert "rotate root takes no --server" in out.stderr
        out = enterprise.run("rotate", "x509")
        assert out.returncode == 2 and "rotate x509 needs --server NAME" in out.stderr
        assert {s.name: _bundle_roots(d, s.name) for s in d.topology.servers} == before
