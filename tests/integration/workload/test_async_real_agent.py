"""The asyncio client and sources against a real SPIRE agent: the same claims as the sync
tests, made through grpc.aio."""

from __future__ import annotations

import asyncio
import time

import pytest

from spire_fabric.identity import TrustDomain, X509Bundle, parse_and_validate_jwt_svid
from spire_fabric.testing._processes import current_uid_selector
from spire_fabric.workload import (
    AsyncBundleSource,
    AsyncJwtSource,
    AsyncWorkloadApiClient,
    AsyncX509Source,
    JwtSvidRejectedError,
    NoIdentityIssuedError,
    X509Context,
)

from .conftest import Workload, wait_for_identity

pytestmark = pytest.mark.integration

TD = TrustDomain("example.org")


async def apoll(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.1)


async def test_async_client_fetches_svids_bundles_and_validates(workload: Workload) -> None:
    async with AsyncWorkloadApiClient(workload.endpoint) as client:
        svid = await client.fetch_x509_svid()
        context = await client.fetch_x509_context()
        x509_bundles = await client.fetch_x509_bundles()
        jwt = await client.fetch_jwt_svid("payments")
        jwt_bundles = await client.fetch_jwt_bundles()
        accepted = await client.validate_jwt_svid(jwt.token, "payments")
        with pytest.raises(JwtSvidRejectedError):
            await client.validate_jwt_svid(jwt.token, "billing")

    server_bundle = X509Bundle.parse_pem(TD, workload.server.bundle_pem().encode())
    assert str(svid.spiffe_id) == workload.spiffe_id
    assert context.default_svid.spiffe_id == svid.spiffe_id
    assert x509_bundles.get_x509_bundle_for_trust_domain(TD) == server_bundle
    assert parse_and_validate_jwt_svid(jwt.token, jwt_bundles, ["payments"]).spiffe_id == (
        svid.spiffe_id
    )
    assert accepted.spiffe_id == svid.spiffe_id


async def test_async_no_matching_entry_raises_no_identity_issued(spire_agent) -> None:
    async with AsyncWorkloadApiClient(spire_agent.endpoint) as client:
        with pytest.raises(NoIdentityIssuedError, match=str(spire_agent.socket_path)):
            await client.fetch_x509_svid()


async def test_async_client_waits_for_socket_of_agent_started_later(workload: Workload) -> None:
    workload.agent.stop()
    async with AsyncWorkloadApiClient(workload.endpoint, wait_for_socket=30, timeout=30) as client:
        fetch = asyncio.ensure_future(client.fetch_x509_svid())
        await asyncio.sleep(1.0)
        assert not fetch.done()
        await asyncio.to_thread(workload.agent.start)
        svid = await asyncio.wait_for(fetch, 40)
    assert str(svid.spiffe_id) == workload.spiffe_id


async def test_async_watch_iterator_yields_contexts(workload: Workload) -> None:
    async with AsyncWorkloadApiClient(workload.endpoint) as client:
        stream = client.watch_x509_context()
        first = await asyncio.wait_for(stream.__anext__(), 10)
        await stream.aclose()
    assert isinstance(first, X509Context)
    assert str(first.default_svid.spiffe_id) == workload.spiffe_id


async def test_async_sources_recover_after_agent_restart(workload: Workload) -> None:
    errors: list[Exception] = []
    async with (
        AsyncX509Source(endpoint=workload.endpoint, on_error=errors.append) as x509,
        AsyncBundleSource(endpoint=workload.endpoint) as bundles,
    ):
        before = x509.get_x509_svid()
        assert x509.get_x509_svid() is before
        assert bundles.get_x509_bundle_for_trust_domain(TD) is not None
        await asyncio.to_thread(workload.agent.stop)
        await apoll(lambda: not x509.healthy and not bundles.healthy, 15, "unhealthy sources")
        assert x509.get_x509_svid() is before
        await asyncio.to_thread(workload.agent.start)
        await apoll(lambda: x509.healthy and bundles.healthy, 30, "sources to recover")
        after = x509.get_x509_svid()
    assert errors
    assert after.leaf.serial_number != before.leaf.serial_number


async def test_async_x509_source_rotates_and_fires_listeners(
    spire_server_factory, spire_agent_factory
) -> None:
    server = spire_server_factory("example.org")
    agent = spire_agent_factory(server)
    server.create_entry(
        "spiffe://example.org/rotating",
        parent_id=agent.spiffe_id,
        selectors=[current_uid_selector()],
        x509_svid_ttl=20,
    )
    await asyncio.to_thread(wait_for_identity, agent)
    fired: list[int] = []
    async with AsyncX509Source(endpoint=agent.endpoint) as source:
        first = source.get_x509_svid()
        source.add_listener(lambda: fired.append(1))
        await apoll(lambda: source.get_x509_svid() is not first, 45, "the SVID to rotate")
        second = source.get_x509_svid()
    assert fired
    assert second.leaf.serial_number != first.leaf.serial_number


async def test_async_jwt_source_asks_the_agent_whose_cache_answers(workload: Workload) -> None:
    """Like the sync JwtSource: no cache of its own (it could not see a taint), so each
    call is a fresh answer, and the agent's own cache makes it the same token."""
    async with AsyncJwtSource(endpoint=workload.endpoint) as source:
        first = await source.fetch_jwt_svid("svc")
        second = await source.fetch_jwt_svid("svc")
        assert second is not first and second.token == first.token
        assert source.get_jwt_bundle_for_trust_domain(TD) is not None
        parse_and_validate_jwt_svid(first.token, source, ["svc"])
        assert await source.wait_until_updated(0.2) is False  # nothing new from the agent
