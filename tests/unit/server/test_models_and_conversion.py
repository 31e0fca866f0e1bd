"""Local validation and proto conversion: no SPIRE needed."""

from __future__ import annotations

import datetime

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spire_fabric.identity import SpiffeId, TrustDomain
from spire_fabric.proto.spire.api.server.entry.v1 import entry_pb2 as entry_api
from spire_fabric.proto.spire.api.types import status_pb2
from spire_fabric.server import (
    AlreadyExistsError,
    BatchResult,
    Bundle,
    Entry,
    EntryField,
    FederationRelationship,
    HttpsSpiffeProfile,
    HttpsWebProfile,
    JwtAuthority,
    NotFoundError,
    PermissionDeniedError,
    Selector,
    SpireApiError,
    SpireValidationError,
    X509Authority,
)
from spire_fabric.server import _convert as cv
from spire_fabric.server._calls import chunked, status_outcome
from spire_fabric.server._errors import error_from_code
from spire_fabric.server._requests import ServerApi

PARENT = "spiffe://example.org/spire/agent/join_token/abc"


def full_entry() -> Entry:
    return Entry(
        id="e-1",
        spiffe_id="spiffe://example.org/web",
        parent_id=PARENT,
        selectors=["unix:uid:1000", Selector("k8s", "ns:default")],
        x509_svid_ttl=3600,
        jwt_svid_ttl=300,
        federates_with=["spiffe://other.org", "third.org"],
        admin=True,
        downstream=True,
        expires_at=1_900_000_000,
        dns_names=("web.example.org", "alt.example.org"),
        revision_number=7,
        store_svid=True,
        hint="external",
        created_at=1_700_000_000,
    )


def a_certificate(cn: str = "root") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def test_selector_parse_splits_on_the_first_colon_only():
    sel = Selector.parse("unix:uid:1000")
    assert (sel.type, sel.value) == ("unix", "uid:1000")
    assert str(sel) == "unix:uid:1000"


@pytest.mark.parametrize("bad", ["nocolon", ":value", "type:", ""])
def test_malformed_selector_is_refused_with_its_text(bad):
    with pytest.raises(SpireValidationError, match="selector"):
        Selector.parse(bad)


def test_entry_accepts_strings_and_coerces_them_to_typed_values():
    e = full_entry()
    assert e.spiffe_id == SpiffeId.parse("spiffe://example.org/web")
    assert e.selectors == (Selector("k8s", "ns:default"), Selector("unix", "uid:1000"))  # sorted
    assert e.federates_with == (TrustDomain("other.org"), TrustDomain("third.org"))


def test_entry_with_malformed_spiffe_id_names_the_field():
    with pytest.raises(SpireValidationError, match=r"Entry\.spiffe_id"):
        Entry("spiffe://Example.org/UPPER host", PARENT, ["unix:uid:1"])


def test_entry_without_selectors_is_refused():
    with pytest.raises(SpireValidationError, match="at least one selector"):
        Entry("spiffe://example.org/w", PARENT, [])


def test_negative_ttl_is_refused():
    with pytest.raises(SpireValidationError, match=r"x509_svid_ttl must be >= 0"):
        Entry("spiffe://example.org/w", PARENT, ["unix:uid:1"], x509_svid_ttl=-1)


def test_entry_round_trips_through_proto_exactly():
    e = full_entry()
    msg = cv.entry_to_proto(e)
    assert msg.federates_with == ["other.org", "third.org"]
    assert cv.entry_from_proto(msg) == e
    # and through the wire encoding too
    assert cv.entry_from_proto(type(msg).FromString(msg.SerializeToString())) == e


def test_a_page_shares_parents_and_trust_domains_and_converts_as_one_entry_at_a_time():
    # entries_from_proto builds each distinct parent and trust domain once: the result
    # must be what converting each message alone gives, for several of each
    entries = [
        Entry(f"spiffe://{td}/w/{i}", parent, [f"unix:uid:{i}", "k8s:ns:a"], id=f"o.{i}",
              federates_with=["b.org", "a.org"], dns_names=["x"], hint="h")
        for i, (td, parent) in enumerate(
            [("example.org", PARENT), ("other.org", PARENT), ("example.org", "spiffe://example.org/p"),
             ("other.org", "spiffe://other.org/p")] * 2
        )
    ]  # fmt: skip
    msgs = [cv.entry_to_proto(e) for e in entries]
    page = cv.entries_from_proto(msgs)
    assert page == [cv.entry_from_proto(m) for m in msgs] == entries
    assert page[0].parent_id is page[4].parent_id
    assert page[1].spiffe_id.trust_domain is page[3].spiffe_id.trust_domain
    assert page[0].spiffe_id.trust_domain != page[1].spiffe_id.trust_domain


def test_a_listed_entry_with_a_bad_trust_domain_is_still_refused():
    msg = cv.entry_to_proto(Entry("spiffe://example.org/w", PARENT, ["unix:uid:1"]))
    msg.spiffe_id.trust_domain = "Bad_Domain"
    with pytest.raises(ValueError, match="Bad_Domain"):
        cv.entries_from_proto([msg])


def test_entry_diff_ignores_list_order_and_server_fields():
    a = full_entry()
    b = Entry(
        **{
            **a.__dict__,
            "selectors": tuple(reversed(a.selectors)),
            "id": "other",
            "revision_number": 99,
            "created_at": 1,
            "dns_names": tuple(reversed(a.dns_names)),
            "hint": "changed",
            "x509_svid_ttl": 1,
        }
    )
    assert a.diff(b) == {EntryField.X509_SVID_TTL, EntryField.HINT}
    assert a.diff(a) == frozenset()


OTHER_VALUE = {
    EntryField.SPIFFE_ID: "spiffe://example.org/api",
    EntryField.PARENT_ID: "spiffe://example.org/spire/agent/other",
    EntryField.SELECTORS: ["unix:uid:1001"],
    EntryField.X509_SVID_TTL: 60,
    EntryField.JWT_SVID_TTL: 61,
    EntryField.FEDERATES_WITH: ["fourth.org"],
    EntryField.ADMIN: False,
    EntryField.DOWNSTREAM: False,
    EntryField.EXPIRES_AT: 1,
    EntryField.DNS_NAMES: ("web.example.org",),
    EntryField.STORE_SVID: False,
    EntryField.HINT: "internal",
}


@pytest.mark.parametrize("changed", list(EntryField))
def test_entry_diff_names_each_settable_field_that_differs_alone(changed: EntryField) -> None:
    a = full_entry()
    b = Entry(**{**a.__dict__, changed.value: OTHER_VALUE[changed]})
    assert a.diff(b) == {changed} and b.diff(a) == {changed}


def test_update_mask_sets_only_the_named_fields():
    batch = ServerApi().update_entries([full_entry()], fields=["hint", EntryField.DNS_NAMES])
    req = batch.chunks[0].request
    assert req.input_mask.hint and req.input_mask.dns_names
    assert not req.input_mask.selectors and not req.input_mask.spiffe_id


def test_unknown_update_field_is_refused_with_the_valid_names():
    with pytest.raises(SpireValidationError, match=r"created_at.*choose from"):
        ServerApi().update_entries([full_entry()], fields=["created_at"])


def test_update_without_entry_id_is_refused():
    entry = Entry("spiffe://example.org/w", PARENT, ["unix:uid:1"])
    with pytest.raises(SpireValidationError, match="no entry ID"):
        ServerApi().update_entries([entry], fields=None)


@pytest.mark.parametrize(
    "build",
    [
        lambda api: api.create_entries([]),
        lambda api: api.delete_entries([]),
        lambda api: api.delete_federated_bundles([], "restrict"),
        lambda api: api.create_federation_relationships([]),
    ],
)
def test_empty_batches_are_refused(build):
    with pytest.raises(SpireValidationError, match="empty batch"):
        build(ServerApi())


def test_list_filter_carries_every_criterion():
    from spire_fabric.server import MatchBehavior

    paged = ServerApi().list_entries(
        spiffe_id="spiffe://example.org/w",
        parent_id=PARENT,
        selectors=["unix:uid:1"],
        selector_match=MatchBehavior.SUPERSET,
        federates_with=["other.org"],
        federates_with_match=MatchBehavior.ANY,
        hint="h",
        downstream=False,
        page_size=7,
    )
    req = paged.page("tok").request
    f = req.filter
    assert (req.page_size, req.page_token) == (7, "tok")
    assert f.by_spiffe_id.path == "/w" and f.by_parent_id.trust_domain == "example.org"
    assert f.by_selectors.match == MatchBehavior.SUPERSET
    assert list(f.by_federates_with.trust_domains) == ["spiffe://other.org"]
    assert f.by_hint.value == "h"
    assert f.HasField("by_downstream") and f.by_downstream.value is False


def test_unset_filters_are_absent_not_empty():
    f = ServerApi().list_entries().page("").request.filter
    assert not f.HasField("by_hint") and not f.HasField("by_downstream")
    assert not f.HasField("by_selectors")


def test_join_token_ttl_below_one_second_is_refused():
    with pytest.raises(SpireValidationError, match="at least 1 second"):
        ServerApi().create_join_token(0, None)


def test_expires_before_is_formatted_as_spire_parses_it():
    when = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    req = (
        ServerApi()
        .count_agents(
            attestation_type=None,
            selectors=None,
            selector_match=0,
            banned=None,
            can_reattest=None,
            expires_before=when,
        )
        .request
    )
    assert req.filter.by_expires_before == "2030-01-02 03:04:05 +0000 +00"


def test_bundle_round_trips_with_tainted_and_jwt_keys():
    cert = a_certificate()
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    bundle = Bundle(
        "other.org",
        (X509Authority(cert, tainted=True), a_certificate("second")),
        (JwtAuthority("kid-1", key, expires_at=123, tainted=False),),
        refresh_hint=60,
        sequence_number=4,
    )
    back = cv.bundle_from_proto(cv.bundle_to_proto(bundle))
    assert back == bundle
    assert back.to_x509_bundle().x509_authorities[0] == cert


def test_federation_relationship_round_trips_both_profiles():
    spiffe = FederationRelationship(
        "other.org",
        "https://other.example:8443",
        HttpsSpiffeProfile("spiffe://other.org/spire/server"),
        Bundle("other.org", (a_certificate(),)),
    )
    web = FederationRelationship("web.org", "https://web.example/bundle", HttpsWebProfile())
    for rel in (spiffe, web):
        assert cv.relationship_from_proto(cv.relationship_to_proto(rel)) == rel


def test_relationship_bundle_of_another_trust_domain_is_refused():
    with pytest.raises(SpireValidationError, match=r"is for other\.org, not web\.org"):
        FederationRelationship(
            "web.org", "https://x", HttpsWebProfile(), Bundle("other.org", (a_certificate(),))
        )


def test_status_codes_map_to_the_typed_errors():
    assert isinstance(error_from_code(5, "entry not found"), NotFoundError)
    assert isinstance(
        error_from_code(grpc.StatusCode.PERMISSION_DENIED, "x"), PermissionDeniedError
    )
    err = error_from_code(6, "similar entry already exists", "entry.BatchCreateEntry")
    assert isinstance(err, AlreadyExistsError) and err.code == grpc.StatusCode.ALREADY_EXISTS
    assert str(err) == "entry.BatchCreateEntry: ALREADY_EXISTS: similar entry already exists"
    assert type(error_from_code(99, "?")) is SpireApiError


def test_batch_parse_keeps_item_order_and_reports_failures_without_raising():
    api = ServerApi()
    good, dup = full_entry(), Entry("spiffe://example.org/x", PARENT, ["unix:uid:2"])
    batch = api.create_entries([good, dup])
    resp = entry_api.BatchCreateEntryResponse(
        results=[
            entry_api.BatchCreateEntryResponse.Result(
                status=status_pb2.Status(code=0, message="OK"), entry=cv.entry_to_proto(good)
            ),
            entry_api.BatchCreateEntryResponse.Result(
                status=status_pb2.Status(code=6, message="similar entry already exists"),
                entry=cv.entry_to_proto(dup),
            ),
        ]
    )
    result: BatchResult[Entry] = batch.merge([batch.chunks[0].parse(resp)])
    assert [i.index for i in result] == [0, 1]
    assert result.succeeded == [good]
    assert isinstance(result[1].error, AlreadyExistsError) and result[1].value == dup
    with pytest.raises(AlreadyExistsError, match="similar entry"):
        result.raise_for_errors()


def test_status_outcome_ok_has_no_error():
    assert status_outcome(status_pb2.Status(code=0), "v", "op") == ("v", None)


def test_chunking_respects_item_and_byte_limits_and_keeps_order():
    msgs = [cv.entry_to_proto(full_entry()) for _ in range(25)]
    by_count = chunked(msgs, 10, 10**9)
    assert [len(c) for c in by_count] == [10, 10, 5]
    size = msgs[0].ByteSize() + 8
    by_bytes = chunked(msgs, 1000, size * 4)
    assert all(len(c) == 4 for c in by_bytes[:-1]) and sum(map(len, by_bytes)) == 25


def test_large_create_is_split_into_several_rpcs():
    entries = [Entry(f"spiffe://example.org/w/{i}", PARENT, ["unix:uid:1"]) for i in range(2500)]
    batch = ServerApi().create_entries(entries)
    sizes = [len(c.request.entries) for c in batch.chunks]
    assert sizes == [1000, 1000, 500]
    assert batch.chunks[2].request.entries[-1].spiffe_id.path == "/w/2499"
    assert not batch.chunks[0].idempotent


def test_every_status_code_maps_to_its_typed_error_by_number_and_by_value():
    """The table is keyed by the codes' names (gRPC is imported only when a code is read):
    every code, given as gRPC's enum or as the number batch results carry, gets its class."""
    from spire_fabric import server

    expected = {
        "INVALID_ARGUMENT": server.InvalidArgumentError,
        "NOT_FOUND": server.NotFoundError,
        "ALREADY_EXISTS": server.AlreadyExistsError,
        "PERMISSION_DENIED": server.PermissionDeniedError,
        "UNAUTHENTICATED": server.UnauthenticatedError,
        "FAILED_PRECONDITION": server.FailedPreconditionError,
        "RESOURCE_EXHAUSTED": server.ResourceExhaustedError,
        "UNAVAILABLE": server.UnavailableError,
        "DEADLINE_EXCEEDED": server.DeadlineExceededError,
        "INTERNAL": server.InternalError,
    }
    for code in grpc.StatusCode:
        want = expected.get(code.name, SpireApiError)
        for given in (code, code.value[0]):
            err = error_from_code(given, "m")
            assert type(err) is want and err.code is code, (given, type(err))
