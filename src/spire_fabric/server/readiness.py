"""``python -m spire_fabric.server.readiness``: the readiness of one SPIRE server replica
that mints a new JWT key at every start, served to the kubelet beside the server.

Why: a replica with memory keys, one of several, activates a new JWT key the moment it
starts (SPIRE 1.13.3 pkg/server/ca/rotator). Were it in the Service at once, an agent could
get a JWT-SVID signed with that key before the verifiers' agents hold it in their bundle,
and it would be refused (the failover drills saw one). A fixed start delay on the server's
probe (``initialDelaySeconds``) kept every such replica out for 15 s, also on a fresh
``up``, where no agent exists yet and the delay protects nothing: there it was a third of
the Kubernetes target's whole ``up``.

This gate asks the server, on each probe, which key signs now, and lets the replica in
when no agent can be missing that key:

- the key has been seen for ``--delay`` seconds (the bundle reached every agent: its next
  sync, every 5 s on Kubernetes, then the push to workloads), or
- the trust domain has no attested agent, and the key has been seen for ``--settle``
  seconds (the servers' bundle caches, 1 s in SPIRE 1.13.3 pkg/server/cache/dscache, hold
  it): every agent that attests later fetches a bundle that holds it.

A key seen while it was still prepared counts from then, so an activation by hand (which
comes after its propagation) does not close the gate. The server's own ``/ready`` is asked
first, and the kubelet asks the gate through the *server* container's probe: a server that
restarts in its pod is unready until the gate has seen its new key, which a probe on the
gate's own container would not ensure. When the gate itself restarts it has seen no key,
so it waits the full delay where agents exist: the safe side.

The listener faces whatever can reach the pod (the kubelet, by policy no one else): one
request per connection, a bounded head, a deadline per connection and a bounded number of
connections, and every request answered once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import h11

from spire_fabric.server._async_client import AsyncSpireServerClient

__all__ = ["NewKeyGate", "ReadinessGate", "main"]

logger = logging.getLogger("spire_fabric.server.readiness")

# The head of a probe is a request line and a few headers; a kubelet's is under 200 bytes.
MAX_HEAD_BYTES = 4096
# A probe connection lives at most this long: the kubelet's own timeout is shorter.
CONNECTION_DEADLINE_S = 5.0
# Probes come one a second per container; more connections than this at once are not
# probes, and are closed unanswered.
MAX_CONNECTIONS = 16
# Each question to the server (its /ready, its LocalAuthority and Agent APIs).
ASK_TIMEOUT_S = 1.0


@dataclass
class NewKeyGate:
    """Which JWT keys a replica may sign with in the Service: the decision alone, with no
    I/O, so it is tested against a clock."""

    delay: float = 15.0
    settle: float = 2.0
    clock: Callable[[], float] = time.monotonic
    _first_seen: dict[str, float] = field(default_factory=dict)
    _passed: set[str] = field(default_factory=set)

    def see(self, key_ids: Iterable[str]) -> None:
        """Record the keys the server holds now (active, prepared, old); forget others."""
        now = self.clock()
        held = set(key_ids)
        self._first_seen = {k: self._first_seen.get(k, now) for k in held}
        self._passed &= held

    def needs_agent_count(self, key_id: str) -> bool:
        """Whether :meth:`decide` needs the number of attested agents for ``key_id``."""
        age = self._age(key_id)
        return key_id not in self._passed and self.settle <= age < self.delay

    def decide(self, key_id: str, agents: int | None = None) -> tuple[bool, str]:
        """(ready, why) for the active key ``key_id``; once passed, a key stays passed."""
        age = self._age(key_id)
        if key_id in self._passed:
            return True, f"JWT key {key_id} passed"
        if age >= self.delay or (agents == 0 and age >= self.settle):
            self._passed.add(key_id)
            why = "no agent was attested" if age < self.delay else f"seen {age:.0f} s ago"
            return True, f"JWT key {key_id} passed: {why}"
        if age < self.settle:
            return False, (
                f"JWT key {key_id} seen {age:.1f} s ago: the servers' bundle caches may not "
                f"hold it for {self.settle - age:.1f} s more"
            )
        return False, (
            f"JWT key {key_id} is new and {agents} agents may not hold it yet: "
            f"ready in {self.delay - age:.0f} s"
        )

    def _age(self, key_id: str) -> float:
        return self.clock() - self._first_seen.setdefault(key_id, self.clock())


class ReadinessGate:
    """The gate's questions to the server: its ``/ready``, then its keys and agents."""

    def __init__(self, client: AsyncSpireServerClient, health_port: int, gate: NewKeyGate):
        self.client, self.health_port, self.gate = client, health_port, gate
        self._lock = asyncio.Lock()  # one decision at a time: the gate's state is shared
        self._said: bool | None = None

    async def check(self) -> tuple[bool, str]:
        async with self._lock:
            try:
                ready, why = await self._check()
            except Exception as e:  # an unreachable server is not ready, said in one line
                ready, why = False, f"cannot ask the server: {type(e).__name__}: {e}"
            if ready is not self._said:  # a line when it changes, not one a second
                logger.info("%s: %s", "ready" if ready else "not ready", why)
                self._said = ready
            return ready, why

    async def _check(self) -> tuple[bool, str]:
        status = await asyncio.to_thread(_http_status, self.health_port, "/ready")
        if status != 200:
            return False, f"SPIRE's /ready answered {status}"
        states = await self.client.get_authority_state("jwt", timeout=ASK_TIMEOUT_S)
        if states.active is None:
            return False, "the server has no active JWT key"
        held = (states.active, states.prepared, states.old)
        self.gate.see(s.authority_id for s in held if s is not None)
        key_id = states.active.authority_id
        agents = None
        if self.gate.needs_agent_count(key_id):
            agents = await self.client.count_agents(timeout=ASK_TIMEOUT_S)
        return self.gate.decide(key_id, agents)


def _http_status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=ASK_TIMEOUT_S)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


async def serve(gate: ReadinessGate, host: str, port: int) -> asyncio.Server:
    """Start the listener: ``GET /ready`` (200 or 503 with the reason), ``GET /live``."""
    slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if slots.locked():
            writer.close()
            return
        async with slots:
            try:
                await asyncio.wait_for(_answer(gate, reader, writer), CONNECTION_DEADLINE_S)
            except (TimeoutError, ConnectionError, h11.ProtocolError):
                pass
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    return await asyncio.start_server(on_connection, host, port)


async def _answer(
    gate: ReadinessGate, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    event: object = h11.NEED_DATA
    while event is h11.NEED_DATA:
        data = await reader.read(MAX_HEAD_BYTES)
        conn.receive_data(data)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as e:
            # h11 still lets the server answer a request it could not parse
            await _send(writer, conn, e.error_status_hint, "bad request\n")
            return
        if not data and event is h11.NEED_DATA:
            return
    if not isinstance(event, h11.Request):
        return
    target = event.target.split(b"?", 1)[0]
    if event.method != b"GET":
        await _send(writer, conn, 405, "only GET\n", allow=True)
    elif target == b"/live":
        await _send(writer, conn, 200, "live\n")
    elif target == b"/ready":
        ready, why = await gate.check()
        await _send(writer, conn, 200 if ready else 503, why + "\n")
    else:
        await _send(writer, conn, 404, "only /ready and /live\n")


async def _send(
    writer: asyncio.StreamWriter,
    conn: h11.Connection,
    status: int,
    text: str,
    *,
    allow: bool = False,
) -> None:
    body = text.encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]
    if allow:
        headers.append(("Allow", "GET"))
    writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
    writer.write(conn.send(h11.Data(data=body)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 600:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds from 0 to 600")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spire_fabric.server.readiness",
        description="Serve the readiness of a SPIRE server replica that mints a JWT key "
        "at start: ready once no agent can lack that key.",
    )
    p.add_argument("--socket", required=True, help="the server's API socket (a path)")
    p.add_argument("--health-port", type=int, required=True, help="SPIRE's health port")
    p.add_argument("--port", type=int, required=True, help="where the gate listens")
    p.add_argument("--host", default="0.0.0.0", help="the kubelet probes the pod's address")
    p.add_argument("--delay", type=_seconds, default=15.0,
                   help="seconds a new key waits while agents exist (default 15)")  # fmt: skip
    p.add_argument("--settle", type=_seconds, default=2.0,
                   help="seconds a new key waits when no agent exists (default 2)")  # fmt: skip
    return p


async def _run(args: argparse.Namespace) -> None:
    gate = NewKeyGate(delay=args.delay, settle=min(args.settle, args.delay))
    async with AsyncSpireServerClient(f"unix://{args.socket}") as client:
        server = await serve(ReadinessGate(client, args.health_port, gate), args.host, args.port)
        logger.info("serving /ready on %s:%d", args.host, args.port)
        async with server:
            await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 0
    except OSError as e:
        print(f"readiness: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
