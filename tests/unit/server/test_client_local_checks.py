"""The client refuses bad input and bad configuration before any RPC.

The address points at a socket that does not exist: if a check were skipped, the call
would wait for its deadline instead of raising SpireValidationError at once.
"""

from __future__ import annotations

import time

import pytest

from spire_fabric.server import (
    AsyncSpireServerClient,
    DeadlineExceededError,
    Entry,
    RetryPolicy,
    SpireClientConfigError,
    SpireServerClient,
    SpireValidationError,
    UnavailableError,
)

NOWHERE = "unix:///tmp/spire-fabric-no-such-dir/api.sock"


@pytest.fixture
def client():
    with SpireServerClient(NOWHERE, timeout=30) as c:
        yield c


def test_malformed_spiffe_id_filter_fails_fast(client):
    start = time.monotonic()
    with pytest.raises(SpireValidationError, match="spiffe_id filter is not a valid SPIFFE ID"):
        client.count_entries(spiffe_id="http://example.org/x")
    assert time.monotonic() - start < 1


def test_malformed_selector_fails_fast(client):
    with pytest.raises(SpireValidationError, match="not of the form 'type:value'"):
        client.list_entries(selectors=["uid1000"])


def test_empty_batch_fails_fast(client):
    with pytest.raises(SpireValidationError, match="empty batch"):
        client.delete_entries([])


def test_negative_ttl_fails_fast(client):
    with pytest.raises(SpireValidationError, match="ttl must be >= 0"):
        client.mint_jwt_svid("spiffe://example.org/x", ["aud"], ttl=-5)


def test_tcp_address_without_sources_is_a_config_error():
    with pytest.raises(SpireClientConfigError, match="needs svid_source"):
        SpireServerClient("127.0.0.1:8081")


def test_unreachable_server_is_retried_until_the_deadline_then_unavailable():
    with SpireServerClient(NOWHERE, timeout=1.0) as c:
        start = time.monotonic()
        with pytest.raises(UnavailableError):
            c.count_entries()
        elapsed = time.monotonic() - start
    assert 0.5 < elapsed < 3.0  # retried (not failed at once) and bounded by the deadline


def test_without_retries_an_unreachable_server_fails_at_once():
    with SpireServerClient(NOWHERE, timeout=5.0, retry=RetryPolicy.none()) as c:
        start = time.monotonic()
        with pytest.raises(UnavailableError):
            c.get_bundle()
        assert time.monotonic() - start < 1.5


def test_non_idempotent_call_waits_for_the_server_instead_of_being_resent():
    entry = Entry("spiffe://example.org/w", "spiffe://example.org/a", ["unix:uid:1"])
    with SpireServerClient(NOWHERE, timeout=0.8) as c, pytest.raises(DeadlineExceededError):
        c.create_entries([entry])


async def test_async_client_checks_input_before_any_rpc():
    async with AsyncSpireServerClient(NOWHERE, timeout=30) as c:
        with pytest.raises(SpireValidationError, match="empty batch"):
            await c.create_entries([])
        with pytest.raises(SpireValidationError, match="selector"):
            c.list_agents(selectors=[":x"])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.get_authority_state("X.509"), "authority kind must be one of"),
        (lambda c: c.prepare_authority("rsa"), "authority kind must be one of"),
        (lambda c: c.activate_authority("", "x509"), "authority_id must be a non-empty"),
        (lambda c: c.taint_authority("", "jwt"), "authority_id must be a non-empty"),
        (lambda c: c.revoke_authority("abc", "pem"), "authority kind must be one of"),
        (lambda c: c.taint_upstream_authority(""), "subject_key_id must be a non-empty"),
        (lambda c: c.revoke_upstream_authority(None), "subject_key_id must be a non-empty"),
    ],
)
def test_local_authority_arguments_fail_fast(client, call, message):
    start = time.monotonic()
    with pytest.raises(SpireValidationError, match=message):
        call(client)
    assert time.monotonic() - start < 1
