"""A JWT-SVID minted in td-b.test is validated by a workload in td-a.test."""

from __future__ import annotations

import pytest

from integration.tls._federated import SERVICE_A, SERVICE_B, Federated, start_federated, wait_for
from spire_fabric.identity import JwtSvidError, SpiffeId, TrustDomain, parse_and_validate_jwt_svid
from spire_fabric.workload import JwtSource, WorkloadApiClient

pytestmark = pytest.mark.integration


def test_jwt_svid_from_b_is_validated_in_a_and_one_for_another_audience_is_refused(
    spire_server_factory, spire_agent_factory
) -> None:
    federated: Federated = start_federated(spire_server_factory, spire_agent_factory)
    federated.register(SERVICE_A, "a")
    federated.register(SERVICE_B, "b")
    td_b = TrustDomain("td-b.test")

    with (
        WorkloadApiClient(federated.agent_b.endpoint) as in_b,
        JwtSource(endpoint=federated.agent_a.endpoint, first_update_timeout=60) as in_a,
    ):
        # A's agent holds B's JWT bundle only because A's entry federates with B.
        wait_for(lambda: in_a.get_jwt_bundle_for_trust_domain(td_b), 60, "B's JWT bundle in A")
        wait_for(lambda: in_b.fetch_jwt_svid(SERVICE_A), 60, "a JWT-SVID from B's agent")
        for_a = in_b.fetch_jwt_svid(SERVICE_A)
        for_someone_else = in_b.fetch_jwt_svid("spiffe://td-a.test/someone-else")

        validated = parse_and_validate_jwt_svid(for_a.token, in_a, [SERVICE_A])
        assert validated.spiffe_id == SpiffeId.parse(SERVICE_B)
        assert SERVICE_A in validated.audience

        with pytest.raises(JwtSvidError, match="expected audience"):
            parse_and_validate_jwt_svid(for_someone_else.token, in_a, [SERVICE_A])
