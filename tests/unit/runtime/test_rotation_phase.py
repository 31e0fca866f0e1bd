"""Where a rotation stands is read from SPIRE's states and bundle alone (so an interrupted
`deploy rotate` resumes), and an unsafe wait is refused with what is missing unless
forced. The rotation itself is tested end to end in tests/e2e/test_rotate.py."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from spire_fabric.runtime.core.rotation import RotationRefused, _Run, phase
from spire_fabric.runtime.deployment import no_report
from spire_fabric.server import AuthorityState, AuthorityStates, Bundle, JwtAuthority
from spire_fabric.topology import preset

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
