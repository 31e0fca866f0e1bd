"""WorkloadApiClient against a real SPIRE agent: what a workload gets, and the errors it sees."""

from __future__ import annotations

import threading
import time

import pytest

from spire_fabric.identity import (
    SpiffeId,
    TrustDomain,
    X509Bundle,
    parse_and_validate_jwt_svid,
    verify_x509_svid,
)
from spire_fabric.testing._processes import current_uid_selector
from spire_fabric.workload import (
    JwtSvidRejectedError,
    NoIdentityIssuedError,
    WorkloadApiClient,
    WorkloadApiUnavailableError,
    X509Context,
)

from .conftest import Workload, poll, wait_for_identity

pytestmark = pytest.mark.integration

TD = TrustDomain("example.org")


def test_fetched_x509_svid_is_ours_and_chains_to_the_servers_bundle(workload: Workload) -> None:
    with WorkloadApiClient(workload.endpoint) as client:
        svid = client.fetch_x509_svid()
        context = client.fetch_x509_context()
        bundles = client.fetch_x509_bundles()

    # Oracle: the bundle as SPIRE's own CLI prints it.
    server_bundle = X509Bundle.parse_pem(TD, workload.server.bundle_pem().encode())
    assert svid.spiffe_id == SpiffeId.parse(workload.spiffe_id)
    assert [s.spiffe_id for s in context.svids] == [svid.spiffe_id]
    assert context.get_x509_bundle_for_trust_domain(TD) == server_bundle
    assert bundles.get_x509_bundle_for_trust_domain(TD) == server_bundle
    verified_id, _ = verify_x509_svid(list(svid.cert_chain), server_bundle)
    assert str(verified_id) == workload.spiffe_id


def test_fetched_jwt_svid_verifies_against_fetched_jwt_bundles(workload: Workload) -> None:
    with WorkloadApiClient(workload.endpoint) as client:
        svid = client.fetch_jwt_svid("audience-a", "audience-b")
        bundles = client.fetch_jwt_bundles()

    assert str(svid.spiffe_id) == workload.spiffe_id
    assert set(svid.audience) == {"audience-a", "audience-b"}
    checked = parse_and_validate_jwt_svid(svid.token, bundles, ["audience-b"])
    assert checked.spiffe_id == svid.spiffe_id


def test_agent_validation_accepts_our_token_and_rejects_another_audience(
    workload: Workload,
) -> None:
    with WorkloadApiClient(workload.endpoint) as client:
        token = client.fetch_jwt_svid("payments").token
        accepted = client.validate_jwt_svid(token, "payments")
        with pytest.raises(JwtSvidRejectedError) as refused:
            client.validate_jwt_svid(token, "billing")

    assert str(accepted.spiffe_id) == workload.spiffe_id
    assert "billing" in str(refused.value)
    assert str(workload.agent.socket_path) in str(refused.value)


def test_jwt_svid_for_a_subject_we_do_not_have_is_no_identity(workload: Workload) -> None:
    with WorkloadApiClient(workload.endpoint) as client, pytest.raises(NoIdentityIssuedError):
        client.fetch_jwt_svid("aud", subject="spiffe://example.org/someone-else")


def test_no_matching_entry_raises_no_identity_issued_naming_the_socket(spire_agent) -> None:
    with WorkloadApiClient(spire_agent.endpoint) as client:
        with pytest.raises(NoIdentityIssuedError) as x509_err:
            client.fetch_x509_svid()
        with pytest.raises(NoIdentityIssuedError) as jwt_err:
            client.fetch_jwt_svid("aud")

    for err in (x509_err.value, jwt_err.value):
        assert str(spire_agent.socket_path) in str(err)
        assert err.endpoint == spire_agent.endpoint


def test_client_created_before_the_agent_starts_waits_for_its_socket(workload: Workload) -> None:
    workload.agent.stop()
    assert not workload.agent.socket_path.exists()
    results: list[object] = []
    client = WorkloadApiClient(workload.endpoint, wait_for_socket=30.0, timeout=30.0)
    fetcher = threading.Thread(target=lambda: results.append(_try(client.fetch_x509_svid)))
    fetcher.start()
    time.sleep(1.0)  # the call must be waiting now, not failing
    assert not results
    workload.agent.start()
    fetcher.join(40)
    client.close()

    assert len(results) == 1, results
    assert not isinstance(results[0], Exception), results[0]
    assert str(results[0].spiffe_id) == workload.spiffe_id  # type: ignore[attr-defined]


def test_missing_socket_fails_after_the_bounded_wait_with_a_clear_error(tmp_path) -> None:
    path = tmp_path / "nothing-here.sock"
    started = time.monotonic()
    with (
        WorkloadApiClient(f"unix://{path}", wait_for_socket=0.5) as client,
        pytest.raises(WorkloadApiUnavailableError, match="does not exist") as err,
    ):
        client.fetch_x509_svid()
    assert 0.5 <= time.monotonic() - started < 5
    assert str(path) in str(err.value)


def test_watch_iterator_yields_contexts_and_stops_on_close(workload: Workload) -> None:
    with WorkloadApiClient(workload.endpoint) as client:
        stream = client.watch_x509_context()
        first = next(stream)
        threading.Timer(0.2, stream.close).start()
        rest = list(stream)  # ends when closed, without an error

    assert isinstance(first, X509Context)
    assert str(first.default_svid.spiffe_id) == workload.spiffe_id
    assert all(isinstance(c, X509Context) for c in rest)


def test_watch_reports_broken_stream_to_on_error_and_resumes(workload: Workload) -> None:
    updates: list[X509Context] = []
    errors: list[Exception] = []
    with WorkloadApiClient(workload.endpoint) as client:
        watcher = client.watch_x509_context(updates.append, on_error=errors.append)
        poll(lambda: updates, 10, "the first update")
        workload.agent.stop()
        poll(lambda: errors, 10, "an error after the agent stopped")
        seen = len(updates)
        workload.agent.start()
        poll(lambda: len(updates) > seen, 30, "an update after the agent restarted")
        watcher.close()

    assert isinstance(errors[0], WorkloadApiUnavailableError)
    assert watcher.error is None and not watcher.running


def test_federated_bundle_is_delivered_when_the_entry_federates(
    spire_server_factory, spire_agent_factory
) -> None:
    server_a = spire_server_factory("a.example", federation=True)
    server_b = spire_server_factory("b.example", federation=True)
    server_a.federate_with(server_b)
    server_b.federate_with(server_a)
    agent = spire_agent_factory(server_a)
    server_a.create_entry(
        "spiffe://a.example/federated",
        parent_id=agent.spiffe_id,
        selectors=[current_uid_selector()],
        federates_with=["b.example"],
    )
    wait_for_identity(agent)
    td_b = TrustDomain("b.example")
    b_bundle = X509Bundle.parse_pem(td_b, server_b.bundle_pem().encode())

    with WorkloadApiClient(agent.endpoint) as client:
        context = client.fetch_x509_context()
        x509_bundles = client.fetch_x509_bundles()
        jwt_bundles = client.fetch_jwt_bundles()

    assert context.get_x509_bundle_for_trust_domain(td_b) == b_bundle
    assert context.get_x509_bundle_for_trust_domain(TrustDomain("a.example")) is not None
    assert x509_bundles.get_x509_bundle_for_trust_domain(td_b) == b_bundle
    assert jwt_bundles.get_jwt_bundle_for_trust_domain(td_b) is not None


def _try(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except Exception as e:
        return e
