"""Source snapshots: replaced whole, SVID object identity changes exactly on rotation,
listeners fire on change only, health follows the streams."""

from __future__ import annotations

import threading
from types import MappingProxyType

import pytest

from spire_fabric.identity import TrustDomain, X509Bundle, X509Svid
from spire_fabric.workload import (
    NoIdentityIssuedError,
    NoMatchingSvidError,
    SourceNotReadyError,
    WorkloadApiClosedError,
    WorkloadApiUnavailableError,
    X509Context,
    pick_by_hint,
    pick_by_id,
    pick_first,
)
from spire_fabric.workload._source_core import SourceState, x509_builder

from ._svids import make_ca, make_svid

CA = make_ca("a.org")
TD = TrustDomain("a.org")
BUNDLE = X509Bundle(TD, (CA[0],))


def _context(*svids) -> X509Context:  # type: ignore[no-untyped-def]
    return X509Context(tuple(svids), MappingProxyType({TD: BUNDLE}))


def _state() -> SourceState:  # type: ignore[type-arg]
    return SourceState("X509Source", "unix:///tmp/a.sock", ["x509"])


def test_repeated_svid_keeps_the_same_object_and_fires_no_listener() -> None:
    state, calls = _state(), []
    state.add_listener(lambda: calls.append(1))
    svid = make_svid(CA, "spiffe://a.org/w")
    state.publish("x509", x509_builder(_context(svid), svid))
    # The agent resends the same SVID (a fresh parse: equal, but another object).
    copy = X509Svid(svid.spiffe_id, svid.cert_chain, svid.private_key)
    state.publish("x509", x509_builder(_context(copy), copy))
    assert state.current().svid is svid
    assert calls == [1]
    assert state.generation == 2  # still counted as an update (health, wait_until_updated)


def test_rotated_svid_replaces_the_snapshot_and_fires_listeners() -> None:
    state, calls = _state(), []
    state.add_listener(lambda: calls.append(1))
    old, new = make_svid(CA, "spiffe://a.org/w"), make_svid(CA, "spiffe://a.org/w")
    state.publish("x509", x509_builder(_context(old), old))
    before = state.current()
    state.publish("x509", x509_builder(_context(new), new))
    assert state.current().svid is new
    assert before.svid is old  # a reader's snapshot is never edited
    assert calls == [1, 1]


def test_a_failing_listener_does_not_stop_the_others() -> None:
    state, calls = _state(), []
    state.add_listener(lambda: 1 / 0)
    state.add_listener(lambda: calls.append(1))
    svid = make_svid(CA, "spiffe://a.org/w")
    state.publish("x509", x509_builder(_context(svid), svid))
    assert calls == [1]


def test_health_drops_on_error_and_returns_with_the_next_update() -> None:
    state = _state()
    svid = make_svid(CA, "spiffe://a.org/w")
    state.publish("x509", x509_builder(_context(svid), svid))
    assert state.healthy
    state.fail("x509", WorkloadApiUnavailableError("gone"))
    assert not state.healthy
    assert state.current().svid is svid  # last good state is still served
    state.publish("x509", x509_builder(_context(svid), svid))
    assert state.healthy


def test_not_ready_keeps_no_identity_error_class_and_closed_state_refuses_reads() -> None:
    state = _state()
    state.fail("x509", NoIdentityIssuedError("no identity issued by /tmp/a.sock"))
    with pytest.raises(NoIdentityIssuedError, match=r"within 0\.01s.*no identity issued"):
        state.wait_ready(0.01)
    with pytest.raises(SourceNotReadyError):
        state.current()
    state.close()
    with pytest.raises(WorkloadApiClosedError):
        state.current()


def test_wait_next_wakes_on_an_update_from_another_thread() -> None:
    state = _state()
    svid = make_svid(CA, "spiffe://a.org/w")
    threading.Timer(0.05, lambda: state.publish("x509", x509_builder(_context(svid), svid))).start()
    assert state.wait_next(5)
    assert not state.wait_next(0.01)


def test_pickers_choose_by_hint_and_id_and_say_what_was_offered() -> None:
    a = make_svid(CA, "spiffe://a.org/a", hint="external")
    b = make_svid(CA, "spiffe://a.org/b", hint="internal")
    assert pick_first([a, b]) is a
    assert pick_by_hint("internal")([a, b]) is b
    assert pick_by_id("spiffe://a.org/b")([a, b]) is b
    with pytest.raises(NoMatchingSvidError, match=r"spiffe://a\.org/a \(hint 'external'\)"):
        pick_by_hint("missing")([a, b])
