"""Where a rotation stands is read from SPIRE's states and bundle alone (so an interrupted
`deploy rotate` resumes), and an unsafe wait is refused with what is missing unless
forced. The rotation itself is tested end to end in tests/e2e/test_rotate.py."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from spire_fabric.identity import TrustDomain
from spire_fabric.runtime.core.rotation import (
    RotationRefused,
    _Run,
    _signed_by,
    _workload_views,
    phase,
)
from spire_fabric.runtime.deployment import no_report
from spire_fabric.server import AuthorityState, AuthorityStates, Bundle, JwtAuthority
from spire_fabric.topology import preset
from spire_fabric.verify import AuthoritiesReport, ServerAuthorities
from spire_fabric.verify._authorities import AgentSvidSource

KEY = ec.generate_private_key(ec.SECP256R1()).public_key()


def _bundle(**tainted: bool) -> Bundle:
    return Bundle("example.org", jwt_authorities=tuple(
        JwtAuthority(kid, KEY, tainted=flag) for kid, flag in tainted.items()))  # fmt: skip


def _state(kid: str) -> AuthorityState:
    return AuthorityState(kid, 0)


@pytest.mark.parametrize(
    ("states", "bundle", "signed", "expected"),
    [
        (AuthorityStates(_state("a")), _bundle(a=False), 0, "start"),
        (AuthorityStates(_state("a"), prepared=_state("b")), _bundle(a=False, b=False), 0,
         "prepared"),
        (AuthorityStates(_state("b"), old=_state("a")), _bundle(a=False, b=False), 1,
         "activated"),
        (AuthorityStates(_state("b"), old=_state("a")), _bundle(a=True, b=False), 1, "tainted"),
        (AuthorityStates(_state("b"), old=_state("a")), _bundle(a=True, b=False), 0, "renewed"),
        (AuthorityStates(_state("b"), old=_state("a")), _bundle(b=False), 0, "start"),
    ],
)  # fmt: skip
def test_phase_is_read_from_states_and_bundle(states, bundle, signed, expected) -> None:
    assert phase(states, bundle, "jwt", signed) == expected


def _run(force: bool) -> _Run:
    t = preset("basic")
    return _Run(None, t.server("spire-server"), "jwt", force, 0.3, no_report)  # type: ignore[arg-type]


def test_a_wait_that_never_clears_is_refused_naming_what_is_missing() -> None:
    with pytest.raises(RotationRefused, match=r"every holder has b: not after 0.3 s: "
                       r"peer x lacks b \(--force goes on anyway\)"):
        _run(force=False).wait(lambda: "peer x lacks b", "every holder has b")


def test_a_forced_wait_goes_on_and_says_so() -> None:
    assert _run(force=True).wait(lambda: "peer x lacks b", "w") == "forced: peer x lacks b"
    assert _run(force=False).wait(lambda: "", "every holder has b") == "every holder has b"


def _x509_run(monkeypatch: pytest.MonkeyPatch, *agents: AgentSvidSource) -> _Run:
    from spire_fabric.runtime.core import rotation

    section = ServerAuthorities("spire-server", "example.org", agents=agents)
    report = AuthoritiesReport("basic", "kubernetes", (section,))
    monkeypatch.setattr(rotation, "authorities_report", lambda d, names: report)
    return _Run(None, preset("basic").server("spire-server"), "x509", False, 0.3, no_report)  # type: ignore[arg-type]


def test_an_agent_whose_svid_cannot_be_read_counts_as_renewed_only_with_a_new_serial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On Kubernetes the agent keeps its SVID in its pod: the report names no authority
    for it, and the rotation must not read that as "nothing chains to the old one". What
    the server reports instead (ListAgents' serial) tells a renewal since the taint."""
    unread = AgentSvidSource("spire-agent", "spiffe://example.org/a", "1", 0, "",
                             "the kubernetes target gives no SVID of it")  # fmt: skip
    run = _x509_run(monkeypatch, unread)
    pending = ("agent spire-agent (the kubernetes target gives no SVID of it; "
               "no new SVID since the taint)")
    assert _signed_by(run, "old") == pending  # no taint in this run: nothing to compare
    run.taint_serials = {"spiffe://example.org/a": "1"}
    assert _signed_by(run, "old") == pending  # the serial the server reported at the taint
    run.taint_serials = {"spiffe://example.org/a": "0"}
    assert _signed_by(run, "old") == ""  # a new SVID since the taint: the active one signed it
    renewed = AgentSvidSource("spire-agent", "spiffe://example.org/a", "2", 0, "new")
    stranger = AgentSvidSource("", "spiffe://example.org/x", "3", 0, "", "not named")
    assert _signed_by(_x509_run(monkeypatch, renewed, stranger), "old") == ""


def test_a_peer_agent_serving_a_federating_workload_is_a_holder() -> None:
    """Before activation the peer's agents must hold the new key too: their workloads
    verify cross-domain calls with the copy their agent syncs, not the peer server's."""
    from spire_fabric.identity import BundleSet

    asked: list[str] = []

    class Views:
        topology = preset("enterprise")

        def jwt_bundles(self, workload: str) -> BundleSet:  # type: ignore[type-arg]
            asked.append(workload)
            return BundleSet(())

    views = _workload_views(Views(), TrustDomain("enterprise-root.org"), "jwt")  # type: ignore[arg-type]
    assert [name for name, _ in views] == [
        "agent upstream-agent", "agent downstream-agent-1", "agent downstream-agent-2",
        "agent downstream-agent-3",
    ]  # fmt: skip
    # read at the same time: which workloads are asked is the claim, not in what order
    assert sorted(asked) == sorted(
        ["upstream-client", "enterprise-api", "data-processor", "security-gateway"])


def test_holders_are_read_at_the_same_time_and_a_failed_read_names_its_agent() -> None:
    """On Kubernetes each read is an exec or a probe pod (seconds), and every poll of a
    rotation's waits reads every holder: one poll must cost the slowest read, not the sum."""
    import threading
    import time

    from spire_fabric.identity import BundleSet

    barrier = threading.Barrier(4, timeout=5)  # passes only if all 4 reads run at once

    class Views:
        topology = preset("enterprise")

        def jwt_bundles(self, workload: str) -> BundleSet:  # type: ignore[type-arg]
            barrier.wait()
            time.sleep(0.3)
            if workload == "data-processor":
                raise RuntimeError("exec failed")
            return BundleSet(())

    start = time.monotonic()
    views = dict(_workload_views(Views(), TrustDomain("enterprise-root.org"), "jwt"))  # type: ignore[arg-type]
    assert time.monotonic() - start < 1.0  # four reads of 0.3 s each, not 1.2 s
    assert views["agent downstream-agent-2"] == "its Workload API did not answer: exec failed"
    assert views["agent downstream-agent-1"] == set()
