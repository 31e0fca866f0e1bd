"""The readiness gate of a replica that mints a JWT key at start: its decision against a
clock, its questions to the server, and its listener against hostile clients."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from spire_fabric.server import readiness
from spire_fabric.server._models import AuthorityState, AuthorityStates
from spire_fabric.server.readiness import NewKeyGate, ReadinessGate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _gate() -> tuple[NewKeyGate, Clock]:
    clock = Clock()
    return NewKeyGate(delay=15, settle=2, clock=clock), clock


def test_a_new_key_waits_the_full_delay_while_agents_exist():
    gate, clock = _gate()
    gate.see(["k1"])
    assert gate.decide("k1", None)[0] is False
    clock.now += 2
    assert gate.needs_agent_count("k1")
    ready, why = gate.decide("k1", 3)
    assert not ready and "3 agents may not hold it" in why and "13 s" in why
    clock.now += 12.9
    assert gate.decide("k1", 3)[0] is False
    clock.now += 0.1
    assert not gate.needs_agent_count("k1")
    assert gate.decide("k1")[0] is True


def test_with_no_agent_a_new_key_passes_once_the_bundle_caches_hold_it():
    """A fresh `up`: no agent can hold an older bundle, but a bundle cache (1 s) might."""
    gate, clock = _gate()
    gate.see(["k1"])
    clock.now += 1.9
    assert not gate.needs_agent_count("k1")
    ready, why = gate.decide("k1", 0)
    assert not ready and "bundle caches" in why
    clock.now += 0.1
    ready, why = gate.decide("k1", 0)
    assert ready and "no agent" in why
    # once passed it stays passed: agents that attest later fetched a bundle with the key
    assert not gate.needs_agent_count("k1")
    assert gate.decide("k1", 5)[0] is True


def test_a_restart_in_the_pod_closes_the_gate_for_its_new_key():
    gate, clock = _gate()
    gate.see(["k1"])
    clock.now += 20
    assert gate.decide("k1")[0] is True
    gate.see(["k2"])  # the server restarted and minted k2
    clock.now += 5
    assert gate.decide("k2", 4)[0] is False
    gate.see(["k1"])  # a key seen again after it was forgotten starts afresh
    assert gate.decide("k1", 4)[0] is False


def test_an_activated_key_counts_from_when_it_was_prepared():
    """Rotation by hand prepares a key, waits for it to spread, then activates it: the
    gate must not take the replica out of the Service then."""
    gate, clock = _gate()
    gate.see(["k1", "k2"])  # k1 active, k2 prepared
    clock.now += 60
    gate.see(["k2", "k1"])  # k2 activated, k1 old
    assert gate.decide("k2", 7)[0] is True


# --- the questions to the server -----------------------------------------------------------


@dataclass
class FakeServer:
    active: str | None = "k1"
    agents: int = 0
    calls: list[str] = field(default_factory=list)
    fail: Exception | None = None

    async def get_authority_state(self, kind: str, *, timeout: float) -> AuthorityStates:
        self.calls.append(f"state:{kind}")
        if self.fail is not None:
            raise self.fail
        active = AuthorityState(self.active, 0) if self.active else None
        return AuthorityStates(active=active)

    async def count_agents(self, *, timeout: float) -> int:
        self.calls.append("count")
        return self.agents


@pytest.fixture
def spire_health() -> Iterator[list[int]]:
    """SPIRE's health listener: answers /ready with the status at the head of the list."""
    status = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status[0] if self.path == "/ready" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    status.append(server.server_address[1])
    yield status
    server.shutdown()
    server.server_close()


def _check(gate: ReadinessGate) -> tuple[bool, str]:
    return asyncio.run(gate.check())


def test_the_gate_asks_spire_first_and_counts_agents_only_when_it_must(spire_health):
    clock = Clock()
    server = FakeServer()
    gate = ReadinessGate(server, spire_health[1], NewKeyGate(clock=clock))  # type: ignore[arg-type]
    spire_health[0] = 503
    ready, why = _check(gate)
    assert not ready and "SPIRE's /ready answered 503" in why and server.calls == []
    spire_health[0] = 200
    assert _check(gate)[0] is False and server.calls == ["state:jwt"]
    clock.now += 2
    assert _check(gate) == (True, "JWT key k1 passed: no agent was attested")
    assert server.calls == ["state:jwt", "state:jwt", "count"]
    server.agents = 2
    assert _check(gate)[0] is True and server.calls[-1] == "state:jwt"
    server.active = "k2"  # restarted in its pod
    assert _check(gate)[0] is False


def test_an_unreachable_server_is_not_ready_with_the_reason(spire_health):
    server = FakeServer(fail=ConnectionError("socket gone"))
    gate = ReadinessGate(server, spire_health[1], NewKeyGate())  # type: ignore[arg-type]
    ready, why = _check(gate)
    assert not ready and why == "cannot ask the server: ConnectionError: socket gone"
    server.fail, server.active = None, None
    assert _check(gate) == (False, "the server has no active JWT key")


def test_a_closed_health_port_is_not_ready():
    gate = ReadinessGate(FakeServer(), 1, NewKeyGate())  # type: ignore[arg-type]
    ready, why = _check(gate)
    assert not ready and why.startswith("cannot ask the server: ConnectionRefusedError")


# --- the listener -----------------------------------------------------------------------


class FixedGate:
    def __init__(self, answer: tuple[bool, str]) -> None:
        self.answer = answer

    async def check(self) -> tuple[bool, str]:
        return self.answer


async def _exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def _ask(answer: tuple[bool, str], *raws: bytes) -> list[bytes]:
    async def run() -> list[bytes]:
        server = await readiness.serve(FixedGate(answer), "127.0.0.1", 0)  # type: ignore[arg-type]
        port = server.sockets[0].getsockname()[1]
        try:
            return [await _exchange(port, raw) for raw in raws]
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(run())


def test_ready_and_not_ready_are_200_and_503_with_the_reason():
    (ok,) = _ask((True, "JWT key k passed"), b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b"\r\n\r\nJWT key k passed\n")
    (no,) = _ask((False, "not yet"), b"GET /ready?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert no.startswith(b"HTTP/1.1 503 ") and no.endswith(b"not yet\n")
    assert b"connection: close" in no.lower()


def test_live_other_paths_and_methods():
    live, other, post, head = _ask(
        (False, "never asked"),
        b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /ready HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"HEAD /ready HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert live.startswith(b"HTTP/1.1 200 ") and live.endswith(b"live\n")
    assert other.startswith(b"HTTP/1.1 404 ")
    assert post.startswith(b"HTTP/1.1 405 ") and b"Allow: GET\r\n" in post
    assert head.startswith(b"HTTP/1.1 405 ") and head.endswith(b"\r\n\r\n")  # no body


def test_a_head_over_the_bound_and_garbage_get_a_4xx():
    big, junk = _ask(
        (True, "-"),
        b"GET /ready HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (2 * readiness.MAX_HEAD_BYTES),
        b"\x16\x03\x01 not http\r\n\r\n",
    )
    assert big.startswith(b"HTTP/1.1 431 ")
    assert junk.startswith(b"HTTP/1.1 400 ")


def test_a_silent_client_is_dropped_at_the_deadline_and_extra_connections_unanswered(
    monkeypatch,
):
    monkeypatch.setattr(readiness, "CONNECTION_DEADLINE_S", 0.3)
    monkeypatch.setattr(readiness, "MAX_CONNECTIONS", 2)

    async def run() -> tuple[bytes, bytes, bytes]:
        server = await readiness.serve(FixedGate((True, "ok")), "127.0.0.1", 0)  # type: ignore[arg-type]
        port = server.sockets[0].getsockname()[1]
        try:
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            await asyncio.sleep(0.05)
            try:  # closed at once: as the request is written, or after
                extra = await _exchange(port, b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            except ConnectionResetError:
                extra = b""
            silent = await asyncio.wait_for(held[0][0].read(), 5)  # closed by the deadline
            after = await _exchange(port, b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            for _, w in held:
                w.close()
            return extra, silent, after
        finally:
            server.close()
            await server.wait_closed()

    extra, silent, after = asyncio.run(run())
    assert extra == b"" and silent == b""
    assert after.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "601", "x"])
def test_bad_seconds_are_refused_by_name(value, capsys):
    with pytest.raises(SystemExit) as e:
        readiness._parser().parse_args(
            ["--socket", "/s", "--health-port", "8080", "--port", "8089", "--delay", value]
        )
    assert e.value.code == 2
    assert "--delay" in capsys.readouterr().err
