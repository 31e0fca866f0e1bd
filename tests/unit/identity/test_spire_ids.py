"""SPIRE's ID conventions and spire_fabric's agent aliases, spelled in one place."""

from __future__ import annotations

import pytest

from spire_fabric.identity import (
    SpiffeIdError,
    TrustDomain,
    agent_alias_id,
    as_trust_domain,
    join_token_agent_id,
    node_alias_id,
    spire_server_id,
)


def test_spire_ids() -> None:
    td = TrustDomain("example.org")
    assert str(spire_server_id(td)) == "spiffe://example.org/spire/server"
    assert str(spire_server_id("example.org")) == "spiffe://example.org/spire/server"
    assert (
        str(join_token_agent_id("example.org", "abc-123"))
        == "spiffe://example.org/spire/agent/join_token/abc-123"
    )
    assert str(agent_alias_id(td, "edge")) == "spiffe://example.org/spire-fabric/agent/edge"
    assert (
        str(node_alias_id(td, "spire", "spire-agent"))
        == "spiffe://example.org/spire-fabric/agents/spire/spire-agent"
    )


def test_a_slash_in_a_value_cannot_add_a_level() -> None:
    with pytest.raises(SpiffeIdError):
        join_token_agent_id("example.org", "a/b")


def test_as_trust_domain() -> None:
    td = TrustDomain("example.org")
    assert as_trust_domain(td) is td
    assert as_trust_domain("example.org") == td
    assert as_trust_domain("spiffe://example.org/x") == td
