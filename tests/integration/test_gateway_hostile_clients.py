"""security-gateway and enterprise-api against hostile clients, as real processes with real
SPIRE (the `world` of test_examples.py: two federated trust domains, four agents).

The clients here are strangers of the gateway: TLS without a client certificate (the
gateway's certificate checked by its SPIFFE ID), then whatever bytes a hostile client
sends. Each test is a finding of issue 26 that used to end in an empty reply, a misleading
502, a held thread or unbounded memory.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from integration import test_examples
from integration.test_examples import ENTERPRISE_API, REPO, SECURITY_GATEWAY, World
from spire_fabric.tls import authorize_id, mtls_client_context, tls_client_context

pytestmark = pytest.mark.integration

# The same module-scoped fixture, run once for this module: SPIRE, agents, API and gateway.
world = test_examples.world


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    return host, int(port)


def _gateway_socket(world: World) -> socket.socket:
    """A TLS connection to the gateway as an external client (no certificate)."""
    context = tls_client_context(world.as_upstream_client, authorize_id(SECURITY_GATEWAY))
    return context.wrap_socket(socket.create_connection(_address(world.gateway_url), timeout=10))


def _api_socket(world: World) -> socket.socket:
    """An mTLS connection to enterprise-api as upstream-client (a reader by its table)."""
    source = world.as_upstream_client
    context = mtls_client_context(source, source, authorize_id(ENTERPRISE_API))
    return context.wrap_socket(socket.create_connection(_address(world.api_url), timeout=10))


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without an answer (got {data[:200]!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _exchange(sock: socket.socket, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send all of ``raw``, then read the answer, in one thread (an SSL socket must not be
    read and written from two threads at once). A server that answers early and closes
    still takes the rest for a while (its lingering close), so the answer is not lost."""
    with sock:
        with contextlib.suppress(OSError):
            sock.sendall(raw)
        return _read_answer(sock)


def _issue_key(world: World, client: str, *routes: str, expires_in: str | None = None) -> str:
    argv = [sys.executable, "-m", "examples.security_gateway", "issue-key", "--api-keys",
            str(world.log_dir / "keys.json"), "--client", client, "--rate", "1000",
            "--burst", "1000"]  # fmt: skip
    for route in routes:
        argv += ["--route", route]
    if expires_in:
        argv += ["--expires-in", expires_in]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def key(world: World) -> str:
    return _issue_key(world, "hostile-tests", "GET /records", "GET /records/*", "POST /records")


def _get(path: str, key: str | None) -> bytes:
    """A GET with this API key (None: no Authorization, as the API's mTLS callers send)."""
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return f"GET {path} HTTP/1.1\r\nHost: gw\r\n{auth}\r\n".encode()


def test_a_6_mb_header_block_gets_431(world: World) -> None:
    block = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 63_000) for i in range(97))
    raw = b"GET /records HTTP/1.1\r\nHost: gw\r\n" + block + b"\r\n"
    for connect in (_gateway_socket, _api_socket):
        status, headers, _ = _exchange(connect(world), raw)
        assert status == 431 and headers["connection"] == "close"


def test_a_duplicate_content_length_gets_400(world: World, key: str) -> None:
    for second in (b"3", b"2"):  # conflicting, and repeated
        raw = (b"POST /records HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + key.encode()
               + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
               b"Content-Length: " + second + b"\r\n\r\n{}")  # fmt: skip
        status, _, body = _exchange(_gateway_socket(world), raw)
        assert status == 400, body
        assert json.loads(body)["reason"] == "more than one Content-Length" or second == b"3"


def test_a_non_ascii_path_gets_400_at_the_api_and_through_the_gateway(
    world: World, key: str
) -> None:
    raw = "GET /records/é HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\n\r\n"
    status, _, _ = _exchange(
        _api_socket(world), "GET /records/é HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    )
    assert status == 400
    status, _, body = _exchange(_gateway_socket(world), raw.format(key).encode())
    assert status == 400, body  # not the 502 "enterprise-api refused the connection" of old


def test_inputs_that_used_to_drop_the_connection_get_400_not_502(world: World, key: str) -> None:
    # a number too big for SQLite, straight to the API and through the gateway
    status, _, body = _exchange(_api_socket(world), _get("/records?after_id=" + "9" * 23, None))
    assert status == 400 and "after_id" in json.loads(body)["reason"]
    status, _, body = _exchange(_gateway_socket(world), _get("/records?after_id=" + "9" * 23, key))
    assert status == 400 and "after_id" in json.loads(body)["reason"]
    # a body nested 30,000 deep, through the gateway to the API's JSON parser
    deep = b"[" * 30_000
    raw = (b"POST /records HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + key.encode()
           + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(deep)
           + deep)  # fmt: skip
    status, _, body = _exchange(_gateway_socket(world), raw)
    assert status == 400 and "nested too deeply" in json.loads(body)["reason"]
    world.gateway.wait_for_line(r"event=audit client=hostile-tests .*method=POST .*status=400 "
                                r"upstream_status=400")  # fmt: skip


def test_unsupported_methods_get_json_and_an_audit_line_and_no_python_version(
    world: World,
) -> None:
    status, headers, body = _exchange(
        _gateway_socket(world), b"PROPFIND /records HTTP/1.1\r\nHost: gw\r\n\r\n"
    )
    assert status == 501 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == "Not Implemented"
    assert headers["server"] == "security-gateway"
    world.gateway.wait_for_line(r"event=audit .*method=PROPFIND .*status=501")
    status, headers, _ = _exchange(
        _api_socket(world), b"DELETE /records/1 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert status == 405 and headers["server"] == "enterprise-api"
    world.api.wait_for_line(r"event=request .*method=DELETE .*status=405")


def test_200_slow_connections_do_not_stop_a_legitimate_client(world: World, key: str) -> None:
    slow = []
    stop = threading.Event()
    try:
        for _ in range(200):
            sock = _gateway_socket(world)
            sock.sendall(b"GET /records HTTP/1.1\r\nHost: gw\r\n")
            slow.append(sock)

        def trickle() -> None:
            while not stop.wait(1.0):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X-Slow: 1\r\n")

        threading.Thread(target=trickle, daemon=True).start()
        waits = []
        began = time.monotonic()
        while time.monotonic() - began < 5.0:
            started = time.monotonic()
            status, _, body = _exchange(_gateway_socket(world), _get("/records", key))
            waits.append(time.monotonic() - started)
            assert status == 200, body
            time.sleep(0.1)
        assert len(waits) >= 10 and max(waits) < 1.0, [round(w, 3) for w in waits]
    finally:
        stop.set()
        for sock in slow:
            sock.close()


def test_keys_are_revoked_and_expire_on_the_running_gateway(world: World) -> None:
    keys = str(world.log_dir / "keys.json")
    mine = _issue_key(world, "revoke-me", "GET /records")
    short = _issue_key(world, "short-lived", "GET /records", expires_in="2s")
    assert _exchange(_gateway_socket(world), _get("/records", mine))[0] == 200
    assert _exchange(_gateway_socket(world), _get("/records", short))[0] == 200
    done = subprocess.run(
        [sys.executable, "-m", "examples.security_gateway", "revoke-key", "--api-keys", keys,
         "--client", "revoke-me"], cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    status, _, body = _exchange(_gateway_socket(world), _get("/records", mine))
    assert status == 401 and json.loads(body)["reason"] == "unknown API key"
    time.sleep(3.1)
    status, _, body = _exchange(_gateway_socket(world), _get("/records", short))
    assert status == 401 and json.loads(body)["reason"] == "API key expired"
    listed = subprocess.run(
        [sys.executable, "-m", "examples.security_gateway", "list-keys", "--api-keys", keys,
         "--output", "json"], cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    rows = {row["client"]: row for row in json.loads(listed.stdout)}
    assert "revoke-me" not in rows and rows["short-lived"]["expired"] is True


def test_a_corrupt_key_file_gets_503_and_a_clear_log_line(world: World, key: str) -> None:
    path = Path(world.log_dir / "keys.json")
    good = path.read_text()
    try:
        path.write_text(good[: len(good) // 2])
        status, headers, body = _exchange(_gateway_socket(world), _get("/records", key))
        assert status == 503 and headers["retry-after"] == "5", body
        line = world.gateway.wait_for_line(r"event=api-keys-unusable path=\S+ error=.*")
        assert "not JSON" in line.group(0)
        # a bearer token that is not an API key does not depend on the file
        assert _exchange(_gateway_socket(world), _get("/records", "x"))[0] == 401
    finally:
        path.write_text(good)
    assert _exchange(_gateway_socket(world), _get("/records", key))[0] == 200
    world.gateway.wait_for_line(r"event=api-keys-usable-again")
    assert "Traceback" not in world.gateway.output()
