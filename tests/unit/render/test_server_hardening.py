"""server.conf hardening settings (issue 27, item 8): audit log, JWT issuer, pruning of
expired nodes, as topology settings rendered for both targets and validated."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from spire_fabric.render import RenderPaths, render_server_config
from spire_fabric.topology import (
    PRESET_NAMES,
    TopologyError,
    dump_topology,
    load_topology,
    preset,
    validate_topology,
)

PATHS = {"local": RenderPaths.local("/state"), "kubernetes": RenderPaths.kubernetes()}


def _server_block(conf: str) -> str:
    return conf.split("\nserver {\n", 1)[1].split("\n}\n", 1)[0]


@pytest.mark.parametrize("target", sorted(PATHS))
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_server_audits_names_its_jwt_issuer_and_prunes_expired_nodes(name, target):
    t = preset(name)
    for s in t.servers:
        block = _server_block(render_server_config(t, s.name, PATHS[target]))
        assert "    audit_log_enabled = true\n" in block
        assert f'    jwt_issuer = "https://{s.trust_domain.name}"\n' in block
        assert '    prune_attested_nodes_expired_for = "24h"\n' in block


def test_the_settings_are_the_topologys_and_survive_yaml():
    t = preset("basic")
    s = dataclasses.replace(
        t.servers[0],
        audit_log_enabled=False,
        jwt_issuer="https://oidc.example.org/spire",
        prune_attested_nodes_expired_for=None,
    )
    t = dataclasses.replace(t, servers=(s,))
    validate_topology(t)
    assert load_topology(dump_topology(t)) == t
    block = _server_block(render_server_config(t, s.name, PATHS["kubernetes"]))
    assert "audit_log_enabled = false" in block
    assert 'jwt_issuer = "https://oidc.example.org/spire"' in block
    assert "prune_attested_nodes_expired_for" not in block


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("jwt_issuer", "http://example.org", "is not an https URL"),
        ("jwt_issuer", "https://", "is not an https URL"),
        ("jwt_issuer", "https://example.org/?a=b", "without query or fragment"),
        ("prune_attested_nodes_expired_for", timedelta(0), "must be a positive duration"),
    ],
)
def test_bad_settings_are_named(field, value, says):
    t = preset("basic")
    s = dataclasses.replace(t.servers[0], **{field: value})
    with pytest.raises(TopologyError) as info:
        validate_topology(dataclasses.replace(t, servers=(s,)))
    problems = [str(p) for p in info.value.problems]
    assert len(problems) == 1
    assert problems[0].startswith(f"servers[spire-server].{field}")
    assert says in problems[0]


def test_a_join_token_agent_needs_its_server_to_accept_join_tokens():
    t = preset("crd-free")
    s = dataclasses.replace(t.servers[0], node_attestors=())
    with pytest.raises(TopologyError) as info:
        validate_topology(dataclasses.replace(t, servers=(s,)))
    text = str(info.value)
    assert "agents[spire-agent].kubernetes.node_attestor" in text
    assert "join_token needs server 'spire-server' to run a join_token node attestor" in text
