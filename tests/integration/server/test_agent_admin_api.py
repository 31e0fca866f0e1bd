"""SpireAgentClient / AsyncSpireAgentClient against a real spire-agent's admin socket.

The test process is the delegate: SPIRE attests the caller of the Delegated Identity API
by its process credentials, so an entry for this process's uid with the delegate's
SPIFFE ID (listed in the agent's `authorized_delegates`) makes it one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import grpc
import pytest

from spire_fabric.agent import AsyncSpireAgentClient, SpireAgentClient
from spire_fabric.identity import SpiffeId, TrustDomain, X509Bundle, verify_x509_svid
from spire_fabric.server import (
    DeadlineExceededError,
    PermissionDeniedError,
    SpireApiError,
    SpireClientConfigError,
    SpireValidationError,
)
from spire_fabric.testing import SpireAgentProcess, SpireServerProcess, current_uid_selector

from .conftest import cli_json

pytestmark = pytest.mark.integration

DELEGATE = "spiffe://example.org/delegate"
WORKLOAD = "spiffe://example.org/workload/nobody"
NOBODY = "unix:uid:12345"  # a uid no process on this machine runs as

T = TypeVar("T")


def eventually(attempt: Callable[[], T], timeout: float = 30.0) -> T:
    """Retry until the agent has synced the entries the attempt depends on."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return attempt()
        except (PermissionDeniedError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def delegate_agent(spire_server: SpireServerProcess, spire_agent_factory) -> SpireAgentProcess:
    agent = spire_agent_factory(spire_server, authorized_delegates=[DELEGATE])
    spire_server.create_entry(DELEGATE, agent.spiffe_id, [current_uid_selector()])
    spire_server.create_entry(WORKLOAD, agent.spiffe_id, [NOBODY], hint="nobody")
    return agent


def server_bundle(server: SpireServerProcess) -> X509Bundle:
    return X509Bundle.parse_pem(TrustDomain("example.org"), server.bundle_pem().encode())


def test_delegate_receives_the_workloads_svid_and_it_verifies_against_the_server_bundle(
    delegate_agent: SpireAgentProcess, spire_server: SpireServerProcess
):
    with SpireAgentClient(str(delegate_agent.admin_socket_path), timeout=10) as agent:
        updates = eventually(lambda: agent.subscribe_to_x509_svids([NOBODY]))
        with updates:
            update = updates.next_update(timeout=30)
            while not update.svids:  # the first update may precede the SVID's minting
                update = updates.next_update(timeout=30)
    assert [str(s.spiffe_id) for s in update.svids] == [WORKLOAD]
    svid = update.svids[0]
    assert svid.hint == "nobody"
    verified_id, chain = verify_x509_svid(svid.cert_chain, server_bundle(spire_server))
    assert verified_id == SpiffeId.parse(WORKLOAD)
    assert chain[-1] in server_bundle(spire_server).x509_authorities


def test_delegate_gets_bundles_and_jwt_svids_for_the_workload(
    delegate_agent: SpireAgentProcess, spire_server: SpireServerProcess
):
    td = TrustDomain("example.org")
    with SpireAgentClient(f"unix://{delegate_agent.admin_socket_path}", timeout=10) as agent:
        jwts = eventually(lambda: agent.fetch_jwt_svids("billing", [NOBODY]))
        with agent.subscribe_to_x509_bundles() as bundles:
            x509_bundles = bundles.next_update(timeout=10)
        with agent.subscribe_to_jwt_bundles() as bundles:
            jwt_bundles = bundles.next_update(timeout=10)
    assert [str(j.spiffe_id) for j in jwts] == [WORKLOAD]
    assert jwts[0].audience == ("billing",)
    assert jwts[0].hint == "nobody"
    assert set(x509_bundles[td].x509_authorities) == set(
        server_bundle(spire_server).x509_authorities
    )
    server_keys = {k["key_id"] for k in cli_json(spire_server, "bundle", "show")["jwt_authorities"]}
    assert set(jwt_bundles[td].jwt_authorities) == server_keys


def test_caller_that_is_not_an_authorized_delegate_is_refused(
    spire_server: SpireServerProcess, spire_agent_factory
):
    # Same uid, but under this agent it is registered as a plain workload.
    agent_process = spire_agent_factory(spire_server, authorized_delegates=[DELEGATE])
    spire_server.create_entry(
        "spiffe://example.org/bystander", agent_process.spiffe_id, [current_uid_selector()]
    )
    spire_server.create_entry(WORKLOAD, agent_process.spiffe_id, [NOBODY])
    with SpireAgentClient(str(agent_process.admin_socket_path), timeout=10) as agent:

        def refused() -> PermissionDeniedError:
            with pytest.raises(PermissionDeniedError) as caught:
                agent.subscribe_to_x509_svids([NOBODY])
            assert "not configured as an authorized delegate" in caught.value.message
            return caught.value

        error = eventually(refused)  # "no identity issued" until the entry syncs
        assert error.code == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(PermissionDeniedError, match="authorized delegate"):
            agent.fetch_jwt_svids("billing", [NOBODY])


def test_debug_info_shows_the_agent_svid_the_server_lists(
    spire_agent: SpireAgentProcess, spire_server: SpireServerProcess
):
    with SpireAgentClient(str(spire_agent.admin_socket_path)) as agent:
        info = agent.get_info()
    listed = cli_json(spire_server, "agent", "list")["agents"]
    assert len(listed) == 1
    listed_id = listed[0]["id"]
    assert str(info.agent_id) == f"spiffe://{listed_id['trust_domain']}{listed_id['path']}"
    assert str(info.agent_id) == spire_agent.spiffe_id
    leaf = info.svid_chain[0]
    assert leaf.expires_at == int(listed[0]["x509svid_expires_at"])
    assert info.uptime_seconds >= 0
    assert abs(info.last_sync_success - time.time()) < 120


def test_logger_api_on_an_agent_without_it_names_the_version_that_has_it(
    spire_agent: SpireAgentProcess,
):
    # The pinned SPIRE 1.13.3 agent registers only Debug and DelegatedIdentity on the
    # admin socket (pkg/agent/api/endpoints.go); the Logger service came in 1.15.2.
    with SpireAgentClient(str(spire_agent.admin_socket_path)) as agent:
        with pytest.raises(SpireApiError) as caught:
            agent.get_log_level()
        assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED
        assert "1.15.2" in str(caught.value)
        with pytest.raises(SpireApiError, match=r"1\.15\.2"):
            agent.set_log_level("debug")
        with pytest.raises(SpireApiError, match=r"1\.15\.2"):
            agent.reset_log_level()


def test_bad_requests_fail_before_any_rpc(tmp_path):
    missing = tmp_path / "nothing.sock"
    with SpireAgentClient(str(missing), timeout=1) as agent:
        with pytest.raises(SpireValidationError, match="exactly one"):
            agent.subscribe_to_x509_svids([NOBODY], pid=1)
        with pytest.raises(SpireValidationError, match="exactly one"):
            agent.subscribe_to_x509_svids()
        with pytest.raises(SpireValidationError, match="audience"):
            agent.fetch_jwt_svids([], [NOBODY])
        with pytest.raises(SpireValidationError, match="not of the form"):
            agent.fetch_jwt_svids("a", ["uid-without-type"])
        with pytest.raises(SpireValidationError, match="unknown log level"):
            agent.set_log_level("chatty")
    with pytest.raises(SpireClientConfigError, match="unix socket"):
        SpireAgentClient("127.0.0.1:8081")


def test_missing_agent_socket_fails_within_the_deadline(tmp_path):
    with SpireAgentClient(str(tmp_path / "admin.sock"), timeout=1) as agent:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            agent.get_info()
        with pytest.raises(DeadlineExceededError, match="first update"):
            agent.subscribe_to_x509_bundles()
        assert time.monotonic() - started < 10


async def test_async_client_receives_the_workload_svid_and_debug_info(
    delegate_agent: SpireAgentProcess, spire_server: SpireServerProcess
):
    async with AsyncSpireAgentClient(str(delegate_agent.admin_socket_path), timeout=10) as agent:
        deadline = time.monotonic() + 30
        while True:
            try:
                updates = await agent.subscribe_to_x509_svids([NOBODY])
                break
            except PermissionDeniedError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        async with updates:
            update = await updates.next_update(timeout=30)
            while not update.svids:
                update = await updates.next_update(timeout=30)
        info = await agent.get_info()
        with pytest.raises(SpireApiError, match=r"1\.15\.2"):
            await agent.get_log_level()
    assert [str(s.spiffe_id) for s in update.svids] == [WORKLOAD]
    verify_x509_svid(update.svids[0].cert_chain, server_bundle(spire_server))
    assert str(info.agent_id) == delegate_agent.spiffe_id
