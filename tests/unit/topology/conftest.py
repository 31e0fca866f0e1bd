from __future__ import annotations

import pytest

from spire_fabric.topology import TopologyBuilder


def two_domain_builder() -> TopologyBuilder:
    """A small sound topology the rule tests break one field at a time."""
    return (
        TopologyBuilder("t")
        .trust_domain("a.org")
        .trust_domain("b.org")
        .server("srv-a", "a.org", host="127.0.0.1", ca_ttl="24h")
        .server("srv-b", "b.org", host="127.0.0.2", ca_ttl="24h")
        .federate("srv-a", "srv-b")
        .agent("agent-a", "srv-a", workload_attestors=["unix"])
        .workload("app", "spiffe://a.org/app", agent="agent-a", selectors=["unix:uid:1000"])
    )


@pytest.fixture
def builder() -> TopologyBuilder:
    return two_domain_builder()
