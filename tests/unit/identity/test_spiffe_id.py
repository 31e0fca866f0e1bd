from __future__ import annotations

import pytest

from spire_fabric.identity import (
    SpiffeId,
    SpiffeIdError,
    SpiffeIdRule,
    TrustDomain,
    TrustDomainError,
)

R = SpiffeIdRule

MALFORMED_IDS = [
    ("", R.EMPTY),
    ("example.org/workload", R.WRONG_SCHEME),
    ("SPIFFE://example.org/workload", R.WRONG_SCHEME),
    ("https://example.org/workload", R.WRONG_SCHEME),
    ("spiffe:/example.org/workload", R.WRONG_SCHEME),
    ("spiffe:example.org", R.WRONG_SCHEME),
    ("spiffe://", R.MISSING_TRUST_DOMAIN),
    ("spiffe:///workload", R.MISSING_TRUST_DOMAIN),
    ("spiffe://Example.org/workload", R.BAD_TRUST_DOMAIN_CHAR),
    ("spiffe://exa mple.org/workload", R.BAD_TRUST_DOMAIN_CHAR),
    ("spiffe://exämple.org/workload", R.BAD_TRUST_DOMAIN_CHAR),
    ("spiffe://example.org:8080/workload", R.PORT),
    ("spiffe://user@example.org/workload", R.USERINFO),
    ("spiffe://example.org?tenant=a", R.QUERY),
    ("spiffe://example.org/workload?tenant=a", R.QUERY),
    ("spiffe://example.org/workload#frag", R.FRAGMENT),
    ("spiffe://example.org/work%20load", R.PERCENT_ENCODED),
    ("spiffe://ex%41mple.org/workload", R.PERCENT_ENCODED),
    ("spiffe://example.org/", R.TRAILING_SLASH),
    ("spiffe://example.org/workload/", R.TRAILING_SLASH),
    ("spiffe://example.org//workload", R.EMPTY_SEGMENT),
    ("spiffe://example.org/a//b", R.EMPTY_SEGMENT),
    ("spiffe://example.org/.", R.DOT_SEGMENT),
    ("spiffe://example.org/..", R.DOT_SEGMENT),
    ("spiffe://example.org/a/./b", R.DOT_SEGMENT),
    ("spiffe://example.org/a/../b", R.DOT_SEGMENT),
    ("spiffe://example.org/work*load", R.BAD_PATH_SEGMENT_CHAR),
    ("spiffe://example.org/wörk", R.BAD_PATH_SEGMENT_CHAR),
    ("spiffe://example.org/a b", R.BAD_PATH_SEGMENT_CHAR),
    ("spiffe://" + "a" * 256 + "/workload", R.TRUST_DOMAIN_TOO_LONG),
    ("spiffe://example.org/" + "a" * 2040, R.TOO_LONG),
]


@pytest.mark.parametrize(("value", "rule"), MALFORMED_IDS, ids=[r.name for _, r in MALFORMED_IDS])
def test_malformed_spiffe_id_is_rejected_naming_the_broken_rule(value: str, rule: SpiffeIdRule):
    with pytest.raises(SpiffeIdError) as exc:
        SpiffeId.parse(value)
    assert exc.value.rule is rule
    assert rule.value in str(exc.value)
    assert str(exc.value).startswith("invalid SPIFFE ID '")


def test_uppercase_trust_domain_message_matches_go_spiffe_wording():
    with pytest.raises(SpiffeIdError) as exc:
        SpiffeId.parse("spiffe://Example.org/x")
    assert str(exc.value) == (
        "invalid SPIFFE ID 'spiffe://Example.org/x': trust domain characters are limited to "
        "lowercase letters, numbers, dots, dashes, and underscores"
    )


VALID_IDS = [
    ("spiffe://example.org", "example.org", ""),
    ("spiffe://example.org/workload", "example.org", "/workload"),
    ("spiffe://a-b_c.9/ns/Prod/sa/Web-1_x.y", "a-b_c.9", "/ns/Prod/sa/Web-1_x.y"),
    ("spiffe://example.org/..a/.b/...", "example.org", "/..a/.b/..."),
    ("spiffe://" + "a" * 255 + "/x", "a" * 255, "/x"),
    (
        "spiffe://example.org/" + "a" * (2048 - len("spiffe://example.org/")),
        "example.org",
        "/" + "a" * (2048 - len("spiffe://example.org/")),
    ),
]


@pytest.mark.parametrize(("value", "td", "path"), VALID_IDS)
def test_valid_spiffe_id_round_trips_with_its_parts(value: str, td: str, path: str):
    sid = SpiffeId.parse(value)
    assert sid.trust_domain == TrustDomain(td)
    assert sid.path == path
    assert str(sid) == value


def test_trust_domain_parses_bare_name_and_spiffe_uri_alike():
    assert TrustDomain.parse("example.org") == TrustDomain.parse("spiffe://example.org/w")
    assert TrustDomain("spiffe://example.org").name == "example.org"
    assert str(TrustDomain("example.org").id()) == "spiffe://example.org"


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("", R.MISSING_TRUST_DOMAIN),
        ("Example.org", R.BAD_TRUST_DOMAIN_CHAR),
        ("example.org:443", R.PORT),
        ("example.org/path", R.BAD_TRUST_DOMAIN_CHAR),
        ("a" * 256, R.TRUST_DOMAIN_TOO_LONG),
        ("spiffe://Example.org", R.BAD_TRUST_DOMAIN_CHAR),
        ("spiffe:/example.org", R.WRONG_SCHEME),
    ],
)
def test_invalid_trust_domain_raises_trust_domain_error(value: str, rule: SpiffeIdRule):
    with pytest.raises(TrustDomainError) as exc:
        TrustDomain.parse(value)
    assert exc.value.rule is rule
    assert str(exc.value).startswith("invalid trust domain")
    with pytest.raises(TrustDomainError):
        TrustDomain(value)


def test_from_parts_validates_each_segment_on_its_own():
    assert str(SpiffeId.from_parts("example.org", "ns", "prod")) == "spiffe://example.org/ns/prod"
    with pytest.raises(SpiffeIdError) as exc:
        SpiffeId.from_parts(TrustDomain("example.org"), "ns/prod")
    assert exc.value.rule is R.BAD_PATH_SEGMENT_CHAR
    for segment, rule in [
        ("", R.EMPTY_SEGMENT),
        ("..", R.DOT_SEGMENT),
        ("a%2F", R.PERCENT_ENCODED),
    ]:
        with pytest.raises(SpiffeIdError) as exc:
            SpiffeId.from_parts("example.org", "ok", segment)
        assert exc.value.rule is rule


def test_direct_construction_validates_the_path():
    with pytest.raises(SpiffeIdError) as exc:
        SpiffeId(TrustDomain("example.org"), "no-leading-slash")
    assert exc.value.rule is R.NO_LEADING_SLASH


def test_ids_are_hashable_ordered_values():
    a = SpiffeId.parse("spiffe://a.org/x")
    b = SpiffeId.parse("spiffe://b.org/a")
    assert {a, SpiffeId.parse("spiffe://a.org/x")} == {a}
    assert sorted([b, a]) == [a, b]
    assert a.member_of(TrustDomain("a.org"))
    assert not a.member_of(TrustDomain("b.org"))
    with pytest.raises(AttributeError):
        a.path = "/y"  # type: ignore[misc]


def test_conversion_to_and_from_py_spiffe_preserves_the_id():
    sid = SpiffeId.parse("spiffe://example.org/ns/prod")
    converted = sid.to_spiffe()
    assert str(converted) == "spiffe://example.org/ns/prod"
    assert SpiffeId.from_spiffe(converted) == sid
    assert TrustDomain("example.org").to_spiffe().name == "example.org"


def test_spiffe_id_error_is_a_value_error():
    with pytest.raises(ValueError):
        SpiffeId.parse("nope")
