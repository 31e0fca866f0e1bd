"""security-gateway's handler against hostile and careless clients, over plain HTTP on
loopback (the gateway's benchmark mode: the same handler, key check, throttle and audit;
the integration tests repeat the TLS-facing limits with real SPIRE)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from spire_fabric.examples._http import ConnectionPool, JsonHandler, PlainHttpServer
from spire_fabric.examples.security_gateway.clients import (
    ApiKeys,
    KeyFileError,
    RateLimiter,
    add_client,
    dump_key_file,
    issue_key,
    list_clients,
    list_keys,
    parse_key_file,
    revoke_client,
    revoke_key,
)
from spire_fabric.examples.security_gateway.guard import FailureThrottle, LineBudget
from spire_fabric.examples.security_gateway.service import Policy, make_handler


class Api(JsonHandler):
    """Stands in for enterprise-api: answers every GET and POST with what it got."""

    server_version = "api"

    def do_GET(self) -> None:
        self.reply(200, {"path": self.path, "client": self.headers.get("X-Gateway-Client")})

    def do_POST(self) -> None:
        self.reply(201, {"got": self.read_json()})


@dataclass
class Gateway:
    url: str
    keys: Path
    pool: ConnectionPool

    def request(
        self, method: str, path: str, key: str | None = None, body: bytes | None = None
    ) -> tuple[int, dict[str, str], dict]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        answer = self.pool.request(method, path, body, headers)
        return answer.status, dict(answer.headers), json.loads(answer.body)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    api = PlainHttpServer(Api, ("127.0.0.1", 0))
    upstream = ConnectionPool(api.url)
    keys = tmp_path / "api-keys.json"
    handler = make_handler(
        upstream, ApiKeys(keys), RateLimiter(), Policy((), 0.0, 1, None, frozenset()), None,
        throttle=FailureThrottle(rate=1.0, burst=5), audit_budget=LineBudget(lines=10, window=60),
    )  # fmt: skip
    server = PlainHttpServer(handler, ("127.0.0.1", 0))
    client = ConnectionPool(server.url)
    yield Gateway(server.url, keys, client)
    client.close()
    server.close()
    upstream.close()
    api.close()


@pytest.fixture
def audit(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="security-gateway")
    return caplog


def _lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"event={event} " in r.getMessage()]


def test_repeated_failed_authentication_is_throttled_but_a_good_key_is_not(
    gateway: Gateway,
) -> None:
    key = issue_key(gateway.keys, "alice", ["GET /records"], 100, 100)
    statuses = [gateway.request("GET", "/records", "sgw_000000000000_nope")[0] for _ in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    status, headers, body = gateway.request("GET", "/records", "sgw_000000000000_nope")
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert body["reason"] == "too many failed authentications"
    assert gateway.request("GET", "/records", key)[0] == 200  # same address, good key


def test_401_reasons_do_not_reveal_what_the_gateway_trusts(gateway: Gateway) -> None:
    status, _, body = gateway.request("GET", "/records", "eyJhbGciOiJFUzI1NiJ9.e30.sig")
    assert status == 401 and body["reason"] == "credentials not accepted"
    status, _, body = gateway.request("GET", "/records", "sgw_000000000000_nope")
    assert status == 401 and body["reason"] == "unknown API key"


def test_audit_lines_of_strangers_are_cut_escaped_and_capped(
    gateway: Gateway, audit: pytest.LogCaptureFixture
) -> None:
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /records/\x1b[31m\x00 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    long_path = "/records/" + "a" * 15_000  # under the 16 KB head limit: it is audited
    assert gateway.request("GET", long_path)[0] == 401
    lines = _lines(audit, "audit")
    assert len(lines) == 2
    assert all(len(line) < 700 for line in lines), lines
    assert all("\x1b" not in line and "\x00" not in line for line in lines)
    assert "...(" in lines[1]
    # 40 more strangers: the budget (10 lines a window here) holds, the rest is counted
    for _ in range(40):
        gateway.request("GET", "/records")
    assert len(_lines(audit, "audit")) == 10
    assert sum(len(r.getMessage()) for r in audit.records) < 10 * 700


def test_log_growth_under_a_flood_of_65_kb_paths_is_bounded(
    gateway: Gateway, audit: pytest.LogCaptureFixture
) -> None:
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    path = b"/records/" + b"a" * 65_000
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < 2.0:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            with contextlib.suppress(OSError):
                sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 431 ")
        sent += 1
    logged = sum(len(r.getMessage()) for r in audit.records)
    assert sent > 20
    assert logged < 10 * 700, (sent, logged)  # was 65 KB per request


def test_unsupported_methods_get_a_json_answer_and_an_audit_line(
    gateway: Gateway, audit: pytest.LogCaptureFixture
) -> None:
    status, headers, body = gateway.request("DELETE", "/records/1")
    assert status == 405 and headers["Allow"] == "GET, POST" and body["error"]
    status, _, body = gateway.request("BREW", "/pot")
    assert status == 501 and body["reason"] == "method not implemented"
    lines = _lines(audit, "audit")
    assert any("method=DELETE" in line and "status=405" in line for line in lines)
    assert any("method=BREW" in line and "status=501" in line for line in lines)


def test_a_corrupt_key_file_gets_503_and_one_log_line_not_an_empty_reply(
    gateway: Gateway, audit: pytest.LogCaptureFixture
) -> None:
    key = issue_key(gateway.keys, "alice", ["GET /records"], 100, 100)
    assert gateway.request("GET", "/records", key)[0] == 200
    gateway.keys.write_text('{"clients": {"alice": ')
    for _ in range(3):
        status, headers, body = gateway.request("GET", "/records", key)
        assert status == 503 and headers["Retry-After"] == "5"
        assert body["reason"] == "API keys cannot be checked right now"
    errors = [r.getMessage() for r in audit.records if "event=api-keys-unusable" in r.getMessage()]
    assert len(errors) == 1 and str(gateway.keys) in errors[0] and "not JSON" in errors[0]
    gateway.keys.unlink()
    key = issue_key(gateway.keys, "alice", ["GET /records"], 100, 100)
    assert gateway.request("GET", "/records", key)[0] == 200


def test_keys_expire_and_revocation_takes_effect_without_a_restart(gateway: Gateway) -> None:
    short = issue_key(gateway.keys, "temp", ["GET /records"], 100, 100, expires_in=1)
    other = issue_key(gateway.keys, "bob", ["GET /records"], 100, 100)
    assert gateway.request("GET", "/records", short)[0] == 200
    time.sleep(2.1)  # expires_at is whole seconds
    status, _, body = gateway.request("GET", "/records", short)
    assert status == 401 and body["reason"] == "API key expired"
    assert gateway.request("GET", "/records", other)[0] == 200
    revoke_key(gateway.keys, "bob")
    assert gateway.request("GET", "/records", other)[0] == 401
    assert [c.name for c in list_keys(gateway.keys)] == ["temp"]


def test_an_upstream_name_that_does_not_resolve_is_a_503_that_says_so(tmp_path: Path) -> None:
    keys = tmp_path / "api-keys.json"
    upstream = ConnectionPool("http://enterprise-api.does-not-resolve.invalid:8443",
                              connect_retry=0.1)  # fmt: skip
    handler = make_handler(upstream, ApiKeys(keys), RateLimiter(),
                           Policy((), 0.0, 1, None, frozenset()), None)  # fmt: skip
    server = PlainHttpServer(handler, ("127.0.0.1", 0))
    try:
        with ConnectionPool(server.url) as client:
            key = issue_key(keys, "alice", ["GET /records"], 100, 100)
            answer = client.request("GET", "/records", None, {"Authorization": f"Bearer {key}"})
        assert answer.status == 503, answer.body
        assert answer.json()["reason"] == "enterprise-api's name does not resolve"
        assert answer.headers["Retry-After"] == "1"
    finally:
        server.close()
        upstream.close()


def test_key_file_documents_can_be_built_without_a_file() -> None:
    document, key = add_client({"clients": {}}, "alice", ["GET /records"], 2, 4, expires_in=60,
                               now=1000)  # fmt: skip
    (info,) = list_clients(document)
    assert (info.name, info.expires_at, info.expired(1059), info.expired(1060)) == (
        "alice", 1060, False, True,
    )  # fmt: skip
    assert key.split("_")[-1] not in dump_key_file(document)
    assert parse_key_file(dump_key_file(document)) == document
    assert list_clients(revoke_client(document, "alice")) == []
    with pytest.raises(ValueError, match="no client 'carol'"):
        revoke_client(document, "carol")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{", "not JSON"),
        ("[]", "expected"),
        ('{"clients": {"a b": {}}}', "names are 1-64"),
        ('{"clients": {"a": {"key_id": "x"}}}', "'key_id' must be 12 hex digits"),
        ("[" * 50_000, "not JSON"),
    ],
)
def test_a_bad_key_file_is_named_in_one_line(text: str, error: str) -> None:
    with pytest.raises(KeyFileError, match=error) as e:
        parse_key_file(text)
    assert "\n" not in str(e.value)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spire_fabric.examples.security_gateway", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_cli_issues_lists_and_revokes_keys(tmp_path: Path) -> None:
    keys = str(tmp_path / "k.json")
    issued = _cli("issue-key", "--api-keys", keys, "--client", "alice", "--route",
                  "GET /records", "--expires-in", "12h")  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    key = issued.stdout.strip()
    assert key.startswith("sgw_") and " until " in issued.stderr
    listed = _cli("list-keys", "--api-keys", keys, "--output", "json")
    (row,) = json.loads(listed.stdout)
    assert row["client"] == "alice" and row["expired"] is False
    assert row["expires_at"] - row["issued_at"] == 12 * 3600
    assert key.split("_")[-1] not in listed.stdout and "sha256" not in listed.stdout
    table = _cli("list-keys", "--api-keys", keys)
    assert "alice" in table.stdout and "GET /records" in table.stdout
    assert _cli("revoke-key", "--api-keys", keys, "--client", "alice").returncode == 0
    again = _cli("revoke-key", "--api-keys", keys, "--client", "alice")
    assert again.returncode == 2 and "no client 'alice'" in again.stderr
    assert json.loads(_cli("list-keys", "--api-keys", keys, "--output", "json").stdout) == []
    bad = _cli("issue-key", "--api-keys", keys, "--client", "x", "--route", "GET /r",
               "--expires-in", "soon")  # fmt: skip
    assert bad.returncode == 2 and "expected a duration" in bad.stderr
    Path(keys).write_text("{broken")
    broken = _cli("list-keys", "--api-keys", keys)
    assert broken.returncode == 2 and "not JSON" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_a_key_file_mounted_like_a_kubernetes_secret_is_reloaded_on_the_symlink_swap(
    tmp_path: Path,
) -> None:
    # The kubelet's layout: KEY -> ..data/KEY, ..data -> ..<timestamp>; an update writes a
    # new timestamped directory and swaps ..data atomically.
    def publish(version: str, document: dict) -> None:
        target = tmp_path / f"..{version}"
        target.mkdir()
        (target / "api-keys.json").write_text(dump_key_file(document))
        (tmp_path / "..data_tmp").symlink_to(target.name)
        (tmp_path / "..data_tmp").rename(tmp_path / "..data")

    first, alice = add_client({"clients": {}}, "alice", ["GET /records"], 5, 5)
    publish("v1", first)
    (tmp_path / "api-keys.json").symlink_to("..data/api-keys.json")
    keys = ApiKeys(tmp_path / "api-keys.json")
    assert keys.check(alice).name == "alice"
    second, bob = add_client(revoke_client(first, "alice"), "bob", ["GET /records"], 5, 5)
    publish("v2", second)
    assert keys.authenticate(alice) is None
    assert keys.check(bob).name == "bob"


def test_with_a_log_file_a_flood_of_audit_lines_takes_bounded_disk(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spire_fabric.examples.security_gateway", "--plain-http",
         "--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9",
         "--allow-trust-domain", "example.org", "--api-keys", str(tmp_path / "keys.json"),
         "--log-file", str(log), "--log-max-bytes", "4000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        url = None
        while url is None and time.monotonic() < deadline:
            found = re.search(r"listening on (http://\S+)", log.read_text() if log.exists() else "")
            url = found.group(1) if found else None
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
        assert url is not None
        with ConnectionPool(url) as pool:
            began = time.monotonic()
            while time.monotonic() - began < 3.0:  # strangers: 401, then 429, all audited
                pool.request("GET", "/records/" + "x" * 150)
        files = sorted(p.name for p in tmp_path.glob("gateway.log*"))
        assert files == ["gateway.log", "gateway.log.1", "gateway.log.2"]
        assert sum(p.stat().st_size for p in tmp_path.glob("gateway.log*")) <= 3 * 4000
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.stdout is not None and proc.stdout.read() == b""  # nothing went to stdout
