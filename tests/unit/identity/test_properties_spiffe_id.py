"""Property tests: the SPIFFE ID and trust domain parsers against a reference reading.

Any text either parses to an ID that prints back as the same text, or raises
SpiffeIdError naming a rule, and the verdict agrees with a direct transcription of the
SPIFFE-ID spec (section 2) plus this project's length limits (2048 bytes per ID, 255 per
trust domain, stricter than go-spiffe). The event counts in the statistics show how the
budget split between valid IDs and each broken rule.
"""

from __future__ import annotations

import string

from hypothesis import event, given
from hypothesis import strategies as st

from spire_fabric.identity import (
    IdentityError,
    SpiffeId,
    SpiffeIdError,
    SpiffeIdRule,
    TrustDomain,
    TrustDomainError,
)

from ._budget import budget

TD_CHARS = frozenset(string.ascii_lowercase + string.digits + ".-_")
PATH_CHARS = TD_CHARS | frozenset(string.ascii_uppercase)


def reference_trust_domain_ok(name: str) -> bool:
    return bool(name) and len(name) <= 255 and set(name) <= TD_CHARS


def reference_segment_ok(segment: str) -> bool:
    return bool(segment) and segment not in (".", "..") and set(segment) <= PATH_CHARS


def reference_id_ok(s: str) -> bool:
    """SPIFFE-ID spec section 2, read literally, with the 2048-byte ID limit."""
    if not s.startswith("spiffe://") or len(s.encode("utf-8", "surrogatepass")) > 2048:
        return False
    name, slash, path = s[len("spiffe://") :].partition("/")
    if not reference_trust_domain_ok(name):
        return False
    return not slash or all(reference_segment_ok(seg) for seg in path.split("/"))


# Characters that matter to the grammar, plus a few that never may appear.
_NEAR = "aZz09.-_/:@?#% é\x00\n" + "\ud800"
near_ids = st.builds(
    lambda scheme, name, path: scheme + name + path,
    st.sampled_from(["spiffe://", "spiffe://", "spiffe://", "SPIFFE://", "spiffe:/", ""]),
    st.one_of(
        st.text(alphabet="abc09.-_", max_size=12),
        st.text(alphabet=_NEAR, max_size=8),
        st.integers(250, 260).map(lambda n: "a" * n),
    ),
    st.one_of(
        st.lists(st.text(alphabet="aZ09._-", max_size=6), max_size=4).map(
            lambda segs: "".join("/" + s for s in segs)
        ),
        st.text(alphabet=_NEAR, max_size=16),
        st.integers(1780, 2060).map(lambda n: "/" + "a" * n),
    ),
)
any_text = st.one_of(st.text(), st.text(alphabet=st.characters(codec=None)), near_ids)


def _record(e: SpiffeIdError) -> None:
    assert isinstance(e, IdentityError)
    assert isinstance(e.rule, SpiffeIdRule)
    assert e.rule.value in str(e)
    event(f"refused: {e.rule.name}")


@given(any_text)
@budget(15)
def test_spiffe_id_parse_is_total_and_agrees_with_the_spec(s: str) -> None:
    try:
        parsed = SpiffeId.parse(s)
    except SpiffeIdError as e:
        _record(e)
        assert not reference_id_ok(s), f"valid per spec but refused: {e}"
        return
    event("valid")
    assert reference_id_ok(s)
    assert str(parsed) == s
    assert SpiffeId.parse(str(parsed)) == parsed
    assert parsed.segments == tuple(s.split("/")[3:]) if parsed.path else parsed.segments == ()


@given(any_text)
@budget(15)
def test_trust_domain_parse_is_total_and_agrees_with_the_spec(s: str) -> None:
    try:
        td = TrustDomain.parse(s)
    except TrustDomainError as e:
        _record(e)
        assert not reference_trust_domain_ok(s) and not reference_id_ok(s)
        return
    event("valid ID" if ":/" in s else "valid name")
    assert reference_trust_domain_ok(s) or reference_id_ok(s)
    assert reference_trust_domain_ok(td.name)
    assert TrustDomain(td.name) == td == TrustDomain(s)


@given(st.text(alphabet="abc.-_", min_size=1, max_size=20), st.lists(any_text, max_size=4))
@budget(10)
def test_from_parts_validates_each_segment(name: str, segments: list[str]) -> None:
    try:
        sid = SpiffeId.from_parts(name, *segments)
    except SpiffeIdError as e:
        _record(e)
        uri = "spiffe://" + name + "".join("/" + seg for seg in segments)
        assert not (all(reference_segment_ok(seg) for seg in segments) and reference_id_ok(uri))
        return
    event("valid")
    assert sid.segments == tuple(segments)
    assert SpiffeId.parse(str(sid)) == sid
