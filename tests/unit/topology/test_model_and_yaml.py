from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from spire_fabric.topology import (
    PRESET_NAMES,
    MySqlDatastore,
    SqliteDatastore,
    TopologyBuilder,
    TopologyError,
    dump_topology,
    effective_datastore,
    format_duration,
    load_topology,
    parse_duration,
    preset,
)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_round_trips_through_yaml(name):
    t = preset(name)
    text = dump_topology(t)
    assert load_topology(text) == t
    assert dump_topology(load_topology(text)) == text


def test_yaml_file_loads_from_path(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(dump_topology(preset("basic")))
    assert load_topology(path) == preset("basic")
    assert load_topology(str(path)) == preset("basic")


def test_model_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset("basic").servers[0].name = "x"  # type: ignore[misc]


def test_durations_are_strings_in_yaml_and_timedeltas_in_the_model():
    t = preset("enterprise")
    assert t.server("spire-upstream-server").default_x509_svid_ttl == timedelta(hours=6)
    assert "default_jwt_svid_ttl: 15m" in dump_topology(t)


@pytest.mark.parametrize(
    ("text", "value"),
    [("6h", timedelta(hours=6)), ("30m", timedelta(minutes=30)), ("1h30m", timedelta(minutes=90))],
)
def test_duration_spelling_round_trips(text, value):
    assert parse_duration(text) == value
    assert format_duration(value) == text


@pytest.mark.parametrize("text", ["1d", "1.5h", "-1h", "h", "6h30", ""])
def test_duration_refuses_what_go_would_read_differently(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_yaml_syntax_error_is_one_topology_error_with_line():
    with pytest.raises(TopologyError, match=r"line \d+, column \d+: not valid YAML"):
        load_topology("name: x\nservers: [\n")


def test_yaml_unknown_field_names_its_path():
    text = dump_topology(preset("basic")).replace("  key_manager: disk", "  key_managr: disk")
    with pytest.raises(TopologyError, match=r"servers\[spire-server\]\.key_managr: unknown field"):
        load_topology(text)


def test_yaml_bad_duration_names_its_path():
    text = dump_topology(preset("basic")).replace("ca_ttl: 24h", "ca_ttl: 1 day")
    with pytest.raises(TopologyError, match=r"servers\[spire-server\]\.ca_ttl: expected a dur"):
        load_topology(text)


def test_yaml_loader_runs_validation():
    text = dump_topology(preset("basic")).replace("agent: spire-agent", "agent: ghost")
    with pytest.raises(TopologyError, match=r"workloads\[example-app\]\.agent: unknown agent"):
        load_topology(text)


def test_yaml_missing_required_field_is_named():
    with pytest.raises(TopologyError, match=r"servers\[s\]\.trust_domain: required field"):
        load_topology("name: t\nservers:\n- name: s\n")


def test_yaml_unknown_datastore_kind_lists_the_known_ones():
    text = dump_topology(preset("basic")).replace("sqlite: {}", "oracle: {}")
    with pytest.raises(TopologyError, match="expected one of: sqlite, mysql, postgres"):
        load_topology(text)


def test_explicit_null_switches_off_a_default_part():
    t = preset("basic")
    assert t.servers[0].bundle_endpoint is None
    assert "bundle_endpoint: null" in dump_topology(t)


def test_builder_reads_well_and_accepts_strings_for_durations():
    t = (
        TopologyBuilder("demo")
        .trust_domain("example.org")
        .server("spire-server", "example.org", default_x509_svid_ttl="2h")
        .agent("agent-1", "spire-server")
        .workload("app", "spiffe://example.org/app", agent="agent-1", selectors=["unix:uid:1"])
        .build()
    )
    assert t.server("spire-server").default_x509_svid_ttl == timedelta(hours=2)
    assert t.workload("app").selectors == ("unix:uid:1",)


def test_federate_creates_both_directions():
    t = preset("enterprise")
    pairs = {(f.server, str(f.trust_domain)) for f in t.federations}
    assert pairs == {
        ("spire-upstream-server", "downstream.example.org"),
        ("spire-downstream-server", "enterprise-root.org"),
    }


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(KeyError, match="basic, enterprise, nested, crd-free"):
        preset("huge")


def test_datastore_is_sqlite_locally_and_mysql_on_kubernetes_for_enterprise():
    s = preset("enterprise").server("spire-downstream-server")
    assert isinstance(effective_datastore(s, "local"), SqliteDatastore)
    k8s = effective_datastore(s, "kubernetes")
    assert isinstance(k8s, MySqlDatastore) and "parseTime=true" in k8s.dsn


def test_the_old_federation_name_still_imports_with_a_deprecation_warning():
    import spire_fabric.topology as topology

    with pytest.warns(DeprecationWarning, match="Federation"):
        old = topology.FederationRelationship
    assert old is topology.Federation
