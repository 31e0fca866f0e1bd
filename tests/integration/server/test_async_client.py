"""AsyncSpireServerClient against a real spire-server, cross-checked with SPIRE's CLI."""

from __future__ import annotations

import asyncio
import time

import pytest

from spire_fabric.identity import SpiffeId
from spire_fabric.server import (
    AlreadyExistsError,
    AsyncSpireServerClient,
    Bundle,
    Entry,
    FederationRelationship,
    HttpsWebProfile,
    InternalError,
    InvalidArgumentError,
    LogLevel,
    MatchBehavior,
    NotFoundError,
)

from .conftest import cli_json, fetch_x509_svid, register_admin

pytestmark = pytest.mark.integration

PARENT = "spiffe://example.org/spire/agent/join_token/parent"


def entry(path: str, *selectors: str, **kw: object) -> Entry:
    return Entry(f"spiffe://example.org{path}", PARENT, selectors or ("unix:uid:7",), **kw)


async def test_entries_lifecycle_matches_the_cli(aclient, spire_server):
    result = await aclient.create_entries(
        [entry("/a", hint="x"), entry("/b", "unix:uid:8"), entry("/a", hint="x")]
    )
    assert [i.ok for i in result] == [True, True, False]
    assert isinstance(result[2].error, AlreadyExistsError)
    a, b = result[0].value, result[1].value
    shown = {e["id"] for e in cli_json(spire_server, "entry", "show")["entries"]}
    assert shown == {a.id, b.id}
    assert await aclient.count_entries() == 2
    assert await aclient.count_entries(selectors=["unix:uid:8"]) == 1
    listed = [e async for e in aclient.list_entries(page_size=1)]
    assert {e.id for e in listed} == shown
    assert [e.id async for e in aclient.list_entries(hint="x")] == [a.id]
    assert (await aclient.get_entry(a.id)) == a
    upd = await aclient.update_entries([Entry(**{**a.__dict__, "hint": "y"})], fields=["hint"])
    assert upd.raise_for_errors()[0].value.hint == "y"
    assert cli_json(spire_server, "entry", "show", "-entryID", a.id)["entries"][0]["hint"] == "y"
    deleted = await aclient.delete_entries([a.id, b.id, "missing"])
    assert [i.ok for i in deleted] == [True, True, False]
    assert cli_json(spire_server, "entry", "count")["count"] == 0
    with pytest.raises(InvalidArgumentError, match="malformed SPIFFE ID filter"):
        await aclient.count_entries(spiffe_id="spiffe://elsewhere.org/x")


async def test_agents_bundles_federation_svids_and_logger(aclient, spire_server, spire_agent):
    agent_id = SpiffeId.parse(spire_agent.spiffe_id)
    assert [a.id async for a in aclient.list_agents(banned=False)] == [agent_id]
    assert await aclient.count_agents(selectors=["nope:x"], selector_match=MatchBehavior.ANY) == 0
    await aclient.ban_agent(agent_id)
    assert (await aclient.get_agent(agent_id)).banned
    await aclient.delete_agent(agent_id)
    assert cli_json(spire_server, "agent", "count")["count"] == 0
    token = await aclient.create_join_token(ttl=60)
    assert len(token.value) > 10

    own = await aclient.get_bundle()
    fed = Bundle("fed.org", own.x509_authorities)
    assert (await aclient.set_federated_bundles([fed])).ok
    assert (await aclient.update_federated_bundles([fed])).ok
    assert (await aclient.create_federated_bundles([fed]))[0].error is not None
    assert [b.trust_domain.name async for b in aclient.list_federated_bundles()] == ["fed.org"]
    assert (await aclient.get_federated_bundle("fed.org")).x509_authorities == own.x509_authorities
    assert await aclient.count_bundles() == 2
    appended = await aclient.append_bundle(x509_authorities=[own.x509_authorities[0].certificate])
    assert appended.x509_authorities == own.x509_authorities  # already there: no duplicate
    assert (await aclient.delete_federated_bundles(["fed.org"], mode="delete")).ok
    assert cli_json(spire_server, "bundle", "count")["count"] == 1

    rel = FederationRelationship("web.org", "https://web.example/b", HttpsWebProfile())
    assert (await aclient.create_federation_relationships([rel])).ok
    assert (await aclient.get_federation_relationship("web.org")) == rel
    assert [r async for r in aclient.list_federation_relationships()] == [rel]
    assert (await aclient.update_federation_relationships([rel])).ok
    with pytest.raises(NotFoundError):
        await aclient.refresh_bundle("nowhere.org")
    with pytest.raises(InternalError, match="failed to fetch bundle"):
        await aclient.refresh_bundle("web.org")  # SPIRE fetches now; the host does not exist
    assert (await aclient.delete_federation_relationships(["web.org"])).ok
    assert cli_json(spire_server, "federation", "list")["federation_relationships"] == []

    svid = await aclient.mint_x509_svid("spiffe://example.org/m")
    assert svid.spiffe_id == SpiffeId.parse("spiffe://example.org/m")
    jwt = await aclient.mint_jwt_svid("spiffe://example.org/m", ["a"])
    assert jwt.token.count(".") == 2
    info = await aclient.server_info()
    assert info.uptime_seconds >= 0 and info.svid_chain
    assert (await aclient.set_log_level(LogLevel.ERROR)).current == LogLevel.ERROR
    assert cli_json(spire_server, "logger", "get")["current_level"] == "ERROR"
    assert (await aclient.get_log_level()).current == LogLevel.ERROR
    assert (await aclient.reset_log_level()).current == LogLevel.DEBUG


async def test_async_client_rides_out_a_server_restart(spire_server):
    async with AsyncSpireServerClient(str(spire_server.socket_path), timeout=20) as client:
        first = (await client.create_entries([entry("/r1")])).raise_for_errors()[0].value
        spire_server.stop()
        down_at = time.monotonic()
        loop = asyncio.get_running_loop()
        loop.call_later(1.0, spire_server.start)  # blocks the loop while SPIRE starts: fine
        assert (await client.get_entry(first.id)) == first
        assert time.monotonic() - down_at >= 1.0
        assert (await client.create_entries([entry("/r2")])).ok


async def test_async_tcp_with_admin_svid(spire_server, spire_agent):
    admin_id = register_admin(spire_server, spire_agent, "/admin/async")
    admin = fetch_x509_svid(spire_agent, admin_id)
    async with AsyncSpireServerClient(
        spire_server.address, svid_source=admin.svid, bundle_source=admin.bundle, timeout=10
    ) as tcp:
        made = (await tcp.create_entries([entry("/tcp")])).raise_for_errors()[0].value
        assert made.id in {e["id"] for e in cli_json(spire_server, "entry", "show")["entries"]}
