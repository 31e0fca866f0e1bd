"""A workload gets its X.509-SVID from a real agent, and verify_x509_svid accepts it.

This uses the raw generated Workload API stub on purpose: it proves the foundation (stubs,
harness, identity) against real SPIRE without depending on the higher-level SDK.
"""

from __future__ import annotations

import time

import grpc
import pytest

from spire_fabric.identity import (
    SpiffeId,
    X509Bundle,
    X509Svid,
    X509SvidError,
    verify_x509_svid,
)
from spire_fabric.proto.workload import workload_pb2, workload_pb2_grpc
from spire_fabric.testing import SpireAgentProcess, SpireServerProcess, current_uid_selector


def fetch_x509_response(agent: SpireAgentProcess, timeout: float = 30.0):
    """First X509SVIDResponse, retrying while the agent has not synced the entry yet."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(agent.endpoint) as channel:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        while True:
            try:
                stream = stub.FetchX509SVID(
                    workload_pb2.X509SVIDRequest(),
                    metadata=[("workload.spiffe.io", "true")],
                    timeout=5,
                )
                return next(iter(stream))
            except grpc.RpcError as err:
                # PermissionDenied = "no identity issued" until the agent syncs the entry
                if err.code() != grpc.StatusCode.PERMISSION_DENIED or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def test_workload_svid_from_real_agent_verifies_against_real_bundle(
    spire_server: SpireServerProcess, spire_agent: SpireAgentProcess
) -> None:
    workload_id = "spiffe://example.org/ns/tests/sa/workload"
    spire_server.create_entry(workload_id, spire_agent.spiffe_id, [current_uid_selector()])

    response = fetch_x509_response(spire_agent)

    svid_msg = response.svids[0]
    svid = X509Svid.parse_der(svid_msg.x509_svid, svid_msg.x509_svid_key)
    bundle_from_agent = X509Bundle.parse_der(
        SpiffeId.parse(workload_id).trust_domain, svid_msg.bundle
    )
    # The oracle for the bundle is the server's own CLI, not what the agent told us.
    bundle_from_server = X509Bundle.parse_pem(
        SpiffeId.parse(workload_id).trust_domain, spire_server.bundle_pem().encode()
    )
    assert set(bundle_from_agent.x509_authorities) == set(bundle_from_server.x509_authorities)

    verified_id, chain = verify_x509_svid(svid.cert_chain, bundle_from_server)

    assert str(verified_id) == workload_id
    assert chain[0] == svid.leaf
    assert chain[-1] in bundle_from_server.x509_authorities


def test_real_svid_is_refused_by_another_trust_domains_bundle(
    spire_server_factory, spire_agent_factory
) -> None:
    server_a = spire_server_factory("a.test")
    server_b = spire_server_factory("b.test")
    agent_a = spire_agent_factory(server_a)
    server_a.create_entry("spiffe://a.test/w", agent_a.spiffe_id, [current_uid_selector()])
    msg = fetch_x509_response(agent_a).svids[0]
    svid = X509Svid.parse_der(msg.x509_svid, msg.x509_svid_key)

    # B's real bundle, filed under A's trust domain name: the chain must not verify.
    impostor_bundle = X509Bundle.parse_pem(
        svid.spiffe_id.trust_domain, server_b.bundle_pem().encode()
    )
    with pytest.raises(X509SvidError, match="could not verify"):
        verify_x509_svid(svid.cert_chain, impostor_bundle)
