"""The entries YAML format: what it accepts, and errors that point at the bad field."""

from __future__ import annotations

import textwrap

import pytest

from spire_fabric.entries._file import (
    EntriesFileError,
    entries_from_data,
    entry_to_dict,
    load_entries_file,
    parse_entries,
)
from spire_fabric.identity import SpiffeId, TrustDomain
from spire_fabric.server import Entry, Selector

PARENT = "spiffe://example.org/spire/agent/join_token/abc"


def yaml(text: str) -> str:
    return textwrap.dedent(text).lstrip()


def one(**fields: object) -> dict:
    item = {"spiffe_id": "spiffe://example.org/a", "parent_id": PARENT, "selectors": ["u:1"]}
    item.update(fields)
    return {"entries": [item]}


def error_of(data: object) -> EntriesFileError:
    with pytest.raises(EntriesFileError) as caught:
        entries_from_data(data, source="e.yaml")
    return caught.value


def test_documented_example_parses_into_the_entry_it_describes():
    spec = parse_entries(
        yaml(
            """
            owner: payments
            entries:
              - spiffe_id: spiffe://example.org/payments/api
                parent_id: spiffe://example.org/spire/agent/join_token/abc
                selectors: [unix:uid:1000]
                x509_svid_ttl: 1h
                federates_with: [partner.org]
                dns_names: [api.payments.svc]
                hint: internal
            """
        )
    )
    assert spec.owner == "payments"
    assert spec.entries == (
        Entry(
            SpiffeId.parse("spiffe://example.org/payments/api"),
            SpiffeId.parse(PARENT),
            (Selector("unix", "uid:1000"),),
            x509_svid_ttl=3600,
            federates_with=(TrustDomain("partner.org"),),
            dns_names=("api.payments.svc",),
            hint="internal",
        ),
    )


def test_defaults_fill_every_entry_and_an_entrys_own_value_wins():
    spec = entries_from_data(
        {
            "defaults": {"parent_id": PARENT, "x509_svid_ttl": "10m"},
            "entries": [
                {"spiffe_id": "spiffe://example.org/a", "selectors": ["u:1"]},
                {"spiffe_id": "spiffe://example.org/b", "selectors": "u:2", "x509_svid_ttl": 5},
            ],
        }
    )
    assert [str(e.parent_id) for e in spec.entries] == [PARENT, PARENT]
    assert [e.x509_svid_ttl for e in spec.entries] == [600, 5]
    assert spec.owner is None


@pytest.mark.parametrize(
    ("written", "seconds"), [(90, 90), ("90s", 90), ("1h30m", 5400), ("2m", 120), (0, 0)]
)
def test_ttl_accepts_seconds_and_go_style_durations(written, seconds):
    assert entries_from_data(one(jwt_svid_ttl=written)).entries[0].jwt_svid_ttl == seconds


def test_expires_at_accepts_iso_time_with_zone_and_unix_seconds():
    spec = parse_entries(
        yaml(
            f"""
            entries:
              - {{spiffe_id: spiffe://example.org/a, parent_id: {PARENT}, selectors: [u:1],
                  expires_at: 2030-01-01T00:00:00Z}}
              - {{spiffe_id: spiffe://example.org/b, parent_id: {PARENT}, selectors: [u:1],
                  expires_at: 1893456000}}
            """
        )
    )
    assert [e.expires_at for e in spec.entries] == [1893456000, 1893456000]


@pytest.mark.parametrize(
    ("data", "where", "words"),
    [
        (one(selectors=["u:1", "uid"]), "entries[0].selectors[1]", "type:value"),
        (one(spiffe_id="http://example.org/a"), "entries[0].spiffe_id", "SPIFFE ID"),
        (one(parent_id=None), "entries[0].parent_id", "required"),
        (one(selectors=[]), "entries[0].selectors", "required"),
        (one(x509_svid_ttl="1d"), "entries[0].x509_svid_ttl", "1h30m"),
        (one(x509_svid_ttl=-1), "entries[0].x509_svid_ttl", ">= 0"),
        (one(federates_with=["Bad TD"]), "entries[0].federates_with[0]", "trust domain"),
        (one(dns_names=["ok", ""]), "entries[0].dns_names[1]", "DNS name"),
        (one(admin="yes"), "entries[0].admin", "true or false"),
        (one(hint=7), "entries[0].hint", "string"),
        (one(hint="x" * 2000), "entries[0]", "hint"),
        (one(expires_at="tomorrow"), "entries[0].expires_at", "ISO 8601"),
        (one(selector=["u:1"]), "entries[0].selector", "did you mean 'selectors'"),
        ({"entries": [{"spiffe_id": "spiffe://x/y"}, 3]}, "entries[0].parent_id", "required"),
        ({"entries": "nope"}, "entries", "list"),
        ({"owner": "two words", "entries": []}, "owner", "letters, digits"),
        ({"owners": "x", "entries": []}, "owners", "did you mean 'owner'"),
        ({"defaults": {"ttl": 5}, "entries": []}, "defaults.ttl", "unknown field"),
        ({}, "entries", "missing"),
    ],
)
def test_bad_field_error_names_file_index_and_field(data, where, words):
    err = error_of(data)
    assert err.where == where
    assert str(err).startswith(f"e.yaml: {where}: ")
    assert words in str(err)


def test_second_entry_error_names_index_two_not_zero():
    data = one()
    data["entries"].append({**data["entries"][0], "spiffe_id": "spiffe://example.org/b"})
    data["entries"].append({**data["entries"][0], "selectors": ["nocolon"]})
    assert error_of(data).where == "entries[2].selectors[0]"


def test_duplicate_spiffe_id_and_parent_names_both_entries():
    data = one()
    data["entries"].append({**data["entries"][0], "hint": "other"})
    err = error_of(data)
    assert err.where == "entries[1]"
    assert "entries[0]" in err.problem


def test_invalid_yaml_reports_the_line():
    with pytest.raises(EntriesFileError, match=r"e\.yaml: line 3: not valid YAML"):
        parse_entries("entries:\n  - spiffe_id: a\n  bad: [\n", source="e.yaml")


def test_missing_file_is_an_error_naming_the_path(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(EntriesFileError, match=r"absent\.yaml: cannot read"):
        load_entries_file(path)


def test_entry_to_dict_reads_back_as_the_same_entry():
    original = entries_from_data(
        one(x509_svid_ttl=60, federates_with=["p.org"], dns_names=["d"], hint="h", admin=True)
    ).entries[0]
    data = entry_to_dict(original)
    del data["id"]
    assert entries_from_data({"entries": [data]}).entries[0] == original
