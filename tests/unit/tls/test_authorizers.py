from __future__ import annotations

import pytest

from spire_fabric.identity import SpiffeId, TrustDomain
from spire_fabric.tls import (
    AuthorizationError,
    authorize_any,
    authorize_id,
    authorize_member_of,
    authorize_one_of,
    authorize_predicate,
)

A = SpiffeId.parse("spiffe://td-a.test/svc/a")
B = SpiffeId.parse("spiffe://td-b.test/svc/b")


def test_authorize_any_accepts_every_verified_peer() -> None:
    authorize_any()(A, [])
    authorize_any()(B, [])


def test_authorize_id_accepts_only_the_exact_id_and_names_both_in_refusal() -> None:
    authorize_id("spiffe://td-a.test/svc/a")(A, [])
    with pytest.raises(
        AuthorizationError,
        match=r'unexpected ID "spiffe://td-b.test/svc/b", '
        r'expected "spiffe://td-a.test/svc/a"',
    ):
        authorize_id(A)(B, [])


def test_authorize_id_does_not_accept_a_path_prefix() -> None:
    with pytest.raises(AuthorizationError):
        authorize_id("spiffe://td-a.test/svc")(A, [])


def test_authorize_one_of_accepts_listed_ids_only() -> None:
    check = authorize_one_of(A, "spiffe://td-b.test/svc/b")
    check(A, [])
    check(B, [])
    with pytest.raises(AuthorizationError, match="expected one of"):
        check(SpiffeId.parse("spiffe://td-b.test/svc/c"), [])


def test_authorize_one_of_with_no_ids_refuses_everyone() -> None:
    with pytest.raises(AuthorizationError, match=r"\(none\)"):
        authorize_one_of()(A, [])


def test_authorize_member_of_checks_the_trust_domain_not_a_string_prefix() -> None:
    authorize_member_of("td-a.test")(A, [])
    with pytest.raises(AuthorizationError, match=r'unexpected trust domain "td-a\.test\.evil"'):
        authorize_member_of(TrustDomain("td-a.test"))(
            SpiffeId.parse("spiffe://td-a.test.evil/svc/a"), []
        )


def test_authorize_predicate_uses_the_description_in_the_refusal() -> None:
    check = authorize_predicate(lambda i: i.path.startswith("/svc/"), "a path under /svc")
    check(A, [])
    with pytest.raises(AuthorizationError, match="does not match a path under /svc"):
        check(SpiffeId.parse("spiffe://td-a.test/db"), [])
