"""The examples' decisions without a network: the API's table, the gateway's keys, routes
and rate limits, and body validation (the e2e tests prove them again on a deployment)."""

from __future__ import annotations

import json
import time

import pytest
from spire_fabric.examples._http import kv
from spire_fabric.examples.enterprise_api.policy import ROUTES, Grants, match_route
from spire_fabric.examples.enterprise_api.service import parse_record, parse_result
from spire_fabric.examples.enterprise_api.store import Store
from spire_fabric.examples.security_gateway.clients import (
    ApiKeys,
    Client,
    RateLimiter,
    issue_key,
    route_allowed,
)

from spire_fabric.identity import SpiffeId

GW = SpiffeId.parse("spiffe://downstream.example.org/ns/downstream-workloads/sa/security-gateway")
DP = SpiffeId.parse("spiffe://downstream.example.org/ns/downstream-workloads/sa/data-processor")
API = SpiffeId.parse("spiffe://downstream.example.org/ns/downstream-workloads/sa/enterprise-api")
UP = SpiffeId.parse("spiffe://enterprise-root.org/ns/upstream-workloads/sa/upstream-client")

GRANTS = Grants.parse(
    [f"read={GW}", f"create={GW}", f"read={DP}", f"report={DP}", "read=enterprise-root.org"]
)


def _route(method: str, path: str):
    route, params, _ = match_route(method, path)
    assert route is not None
    return route, params


@pytest.mark.parametrize(
    ("peer", "method", "path", "allowed"),
    [
        (GW, "GET", "/records", True),
        (GW, "POST", "/records", True),
        (GW, "POST", "/results", False),
        (DP, "GET", "/records/3", True),
        (DP, "POST", "/results", True),
        (DP, "POST", "/records", False),
        (UP, "GET", "/results", True),
        (UP, "POST", "/records", False),
        (API, "GET", "/records", False),  # same trust domain, not in the table
        (API, "GET", "/health", True),
    ],
)
def test_the_api_table_decides_each_route(peer, method, path, allowed) -> None:
    route, _ = _route(method, path)
    decision = GRANTS.decide(route, peer)
    assert decision.allowed is allowed, decision.reason
    if not allowed:
        assert str(peer) in decision.reason and route.name in decision.reason


def test_only_posting_results_needs_a_jwt_svid() -> None:
    assert [r.name for r in ROUTES if r.jwt_required] == ["results.create"]


def test_unknown_paths_and_methods_are_told_apart() -> None:
    assert match_route("GET", "/nope") == (None, {}, False)
    assert match_route("DELETE", "/records") == (None, {}, True)
    assert match_route("GET", "/records/0")[0] is None  # ids are positive integers
    assert _route("GET", "/records/12")[1] == {"id": "12"}


@pytest.mark.parametrize("bad", ["read", "admin=spiffe://x.org/a", "read=", "read=not a td!"])
def test_a_bad_grant_fails_at_startup(bad: str) -> None:
    with pytest.raises(ValueError):
        Grants.parse([bad])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "JSON object"),
        ({"region": "x", "balance": 1}, "customer"),
        ({"customer": "a", "region": "x", "balance": "1"}, "balance"),
        ({"customer": "a", "region": "x", "balance": float("nan")}, "balance"),
        ({"customer": "a", "region": "x", "balance": True}, "balance"),
    ],
)
def test_malformed_records_are_refused_with_a_reason(body: object, reason: str) -> None:
    with pytest.raises(Exception, match=reason):
        parse_record(body)


def test_malformed_results_are_refused_with_a_reason() -> None:
    with pytest.raises(Exception, match="through_id"):
        parse_result({"through_id": -1, "record_ids": [], "totals": {}})
    with pytest.raises(Exception, match="totals"):
        parse_result({"through_id": 1, "record_ids": [1], "totals": {"x": "y"}})
    assert parse_result({"through_id": 1, "record_ids": [1], "totals": {"x": 2}}) == (
        1, [1], {"x": 2.0},
    )  # fmt: skip


def test_the_store_survives_a_reopen(tmp_path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    created = store.create_record("Hooli", "us-west", 42.5, str(GW))
    store.add_result(created["id"], [created["id"]], {"us-west": 42.5}, str(DP))
    store.close()
    again = Store(tmp_path / "db.sqlite3")
    assert again.get_record(created["id"]) == created
    assert [r["id"] for r in again.list_records()] == [1, 2, 3, created["id"]]
    assert again.list_records(after_id=3) == [created]
    assert again.list_results()[0]["totals"] == {"us-west": 42.5}
    again.close()


def test_issued_keys_are_stored_hashed_and_authenticate(tmp_path) -> None:
    path = tmp_path / "keys.json"
    key = issue_key(path, "alice", ["GET /records", "post /records/*"], 2, 3)
    stored = path.read_text()
    assert key.split("_")[-1] not in stored  # only the hash is kept
    assert path.stat().st_mode & 0o777 == 0o600
    keys = ApiKeys(path)
    client = keys.authenticate(key)
    assert client is not None and client.name == "alice"
    assert client.routes == ("GET /records", "POST /records/*")
    assert keys.authenticate(key[:-1] + ("0" if key[-1] != "0" else "1")) is None
    assert keys.authenticate("sgw_unknown_secret") is None
    # re-issuing replaces the key; the running gateway re-reads the file
    newer = issue_key(path, "alice", ["GET /records"], 2, 3)
    assert keys.authenticate(key) is None and keys.authenticate(newer) is not None
    assert json.loads(path.read_text())["clients"]["alice"]["routes"] == ["GET /records"]


def test_route_allow_lists_match_exactly_or_by_trailing_wildcard() -> None:
    routes = ("GET /records", "GET /records/*")
    assert route_allowed(routes, "GET", "/records")
    assert route_allowed(routes, "GET", "/records/7")
    assert not route_allowed(routes, "POST", "/records")
    assert not route_allowed(routes, "GET", "/records/")
    assert not route_allowed(routes, "GET", "/recordsX")
    assert not route_allowed(routes, "GET", "/results")


def test_the_rate_limiter_allows_a_burst_then_says_when_to_retry() -> None:
    client = Client("c", "apikey", (), rate=2, burst=3)
    limiter = RateLimiter()
    assert [limiter.take(client) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take(client)
    assert 0 < wait <= 0.5
    time.sleep(wait + 0.01)
    assert limiter.take(client) == 0.0


def test_log_fields_are_quoted_only_when_needed() -> None:
    assert kv(a=1, b="two words", c=None, d='q"') == 'a=1 b="two words" c=- d="q\\""'


def test_client_names_are_plain(tmp_path) -> None:
    with pytest.raises(ValueError, match="client name"):
        issue_key(tmp_path / "keys.json", "bad\r\nname", ["GET /records"], 1, 1)
