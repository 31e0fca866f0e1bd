"""Requests/s through security-gateway → enterprise-api: full mTLS path vs plain HTTP.

(1) ``mtls``: the enterprise topology brought up by ``deploy up`` (real SPIRE): an external
    client verifies the gateway's certificate against ``deploy trust-anchor`` and sends an
    API key; the gateway forwards over pooled mTLS with its own SVID; the API authorizes it
    by its table and reads SQLite.
(2) ``plain``: the *same two programs* (same handlers, key check, rate limiter, table,
    SQLite, connection pool, logging) started with their benchmark-only flags
    ``--plain-http`` / ``--plain-http-peer``: plain HTTP on loopback, no identity.

A load generator in a second process holds ``--connections`` keep-alive connections for
``--seconds`` per round and reports requests/s and p50/p99 latency. Rounds alternate
(mtls, plain, mtls, plain, ...) and medians are compared. CPU seconds per request of each
server process (from /proc) say where the time goes. Target: (1) >= 0.8 x (2).

    .venv/bin/python benchmarks/bench_gateway.py [--seconds 8] [--rounds 2] [--connections 8]

``hostile [--repo DIR]``: the gateway and API of the checkout DIR (default: this one) in
their plain-HTTP mode (the HTTP parser and limits are the same code as under TLS), then
(a) 30 clients at once each send a 6 MB header block (97 headers of 63 KB): the gateway's
peak RSS over its idle RSS, and what each client got back; (b) 200 slowloris connections
(a header line every 2 s) while a legitimate client sends a request every 0.2 s: its
worst and median wait, and how many slow connections the gateway still holds after 15 s.
Run it with ``--repo`` on a checkout of the old code for a before/after.

    .venv/bin/python benchmarks/bench_gateway.py hostile [--repo /tmp/main-checkout]

Measured (2 shared CPUs, Python 3.11, OpenSSL 3.0, 8 connections, 8 s x 3 rounds; load
average 9-16 from other jobs): mtls 1266 req/s p50 5.6 ms p99 25 ms; plain 1274 req/s p50
5.7 ms p99 20 ms; ratio 0.99x. CPU per request, mtls vs plain: gateway 436 vs 398 us, API
318 vs 296 us, load generator 160 vs 145 us. So TLS on both legs costs ~60 us of CPU per
request, record encryption only: keep-alive leaves 8 + a few pooled handshakes per round.
The rest is Python HTTP parsing and building, twice in the gateway, once in the API. Since
the HTTP layer moved from ``http.server`` to h11 (strict framing, bounded heads; see
examples/_http.py) a request costs ~75 us more in the gateway and ~60 us more in the API
(plain mode, same load: 394 vs 319 us and 290 vs 230 us). With both servers and the load
generator sharing two cores the run is CPU-bound, and p50 is mostly queueing. Before the
servers wrote each answer in one write with TCP_NODELAY, both sides were capped at ~100
req/s by Nagle + delayed ACK.

``hostile`` (plain mode, load average ~9), before (827923d, http.server) and after (h11):
30 x 6 MB heads: RSS 54 -> 397 MB peak, 267 MB kept, answers 21 x 401 and 9 dropped;
after: 54 -> 55 MB, 30 x 431 in 0.1 s. 200 slowloris connections: before, all 200 still
held after 15 s (and opening them took 31 s: listen backlog 5); after, none (408 at the
10 s header deadline), opened in 1 s; the legitimate client's wait: p50 2.5 / 2.6 ms, max
16 / 28 ms (connection-per-thread kept it served in both).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from _keepalive import keepalive_load

REPO = Path(__file__).resolve().parents[1]
GATEWAY_ID = "spiffe://downstream.example.org/ns/downstream-workloads/sa/security-gateway"
GATEWAY_DNS = "security-gateway.downstream-workloads.svc"
ROUTE = "/records"


# -- the load generator (runs in its own process: `bench_gateway.py load ...`) -------------


def load(url: str, key: str, seconds: float, connections: int, cafile: str | None) -> dict:
    host, port = url.split("://", 1)[1].split(":")
    context = ssl.create_default_context(cafile=cafile) if url.startswith("https://") else None

    def connect() -> http.client.HTTPConnection:
        if context is None:
            return http.client.HTTPConnection(host, int(port), timeout=10)
        # verify by DNS name, as curl --resolve does
        c = http.client.HTTPSConnection(GATEWAY_DNS, int(port), context=context, timeout=10)
        c.sock = context.wrap_socket(
            socket.create_connection((host, int(port)), timeout=10), server_hostname=GATEWAY_DNS
        )
        return c

    return keepalive_load(connect, ROUTE, seconds, connections,
                          {"Authorization": f"Bearer {key}"})  # fmt: skip


# -- hostile clients against plain-mode services of a checkout ----------------------------


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _answer_status(sock: socket.socket) -> str:
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        return type(e).__name__
    return data.split(b"\r\n", 1)[0].split(b" ")[1].decode() if data else "no answer"


def _send_all(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # answered and closed before taking it all
        sock.sendall(data)


def header_flood(host: str, port: int, pid: int, clients: int = 30) -> dict:
    block = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 63_000) for i in range(97))
    request = b"GET /records HTTP/1.1\r\nHost: x\r\n" + block + b"\r\n"
    idle = _rss_kb(pid)
    peak = idle
    statuses: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        with socket.create_connection((host, port), timeout=60) as sock:
            sender = threading.Thread(target=_send_all, args=(sock, request))
            sender.start()
            status = _answer_status(sock)
            sender.join(60)
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, _rss_kb(pid))
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    time.sleep(1.0)
    return {"idle_rss_mb": idle / 1024, "peak_rss_mb": peak / 1024,
            "after_rss_mb": _rss_kb(pid) / 1024, "seconds": elapsed,
            "statuses": {s: statuses.count(s) for s in sorted(set(statuses))}}  # fmt: skip


def slowloris(host: str, port: int, key: str, slow: int = 200, seconds: float = 15.0) -> dict:
    socks = []
    opened = time.monotonic()
    for _ in range(slow):
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(b"GET /records HTTP/1.1\r\nHost: x\r\n")
        socks.append(sock)
    open_s = time.monotonic() - opened
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(2.0):
            for sock in socks:
                _send_all(sock, b"X-Slow: 1\r\n")

    threading.Thread(target=trickle, daemon=True).start()
    waits: list[float] = []
    failures = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.request("GET", ROUTE, headers={"Authorization": f"Bearer {key}"})
            ok = conn.getresponse().status == 200
            conn.close()
        except (OSError, http.client.HTTPException):
            ok = False
        waits.append(time.monotonic() - t0)
        failures += not ok
        time.sleep(0.2)
    stop.set()
    held = 0
    for sock in socks:  # still open (nothing answered, not closed) after `seconds`?
        sock.setblocking(False)
        try:
            sock.recv(1)  # an answer (408) or the end: the gateway let go of it
        except BlockingIOError:
            held += 1  # nothing to read: the gateway still waits for this head
        except OSError:
            pass
        sock.close()
    waits.sort()
    return {"open_200_s": open_s, "legit_requests": len(waits), "legit_failures": failures,
            "legit_p50_ms": waits[len(waits) // 2] * 1000, "legit_max_ms": waits[-1] * 1000,
            "slow_still_held": held}  # fmt: skip


def hostile(repo: Path) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="sf-bench-hostile-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        keys = tmp / "api-keys.json"
        key = subprocess.run(
            [sys.executable, "-m", "examples.security_gateway", "issue-key", "--api-keys",
             str(keys), "--client", "bench", "--route", f"GET {ROUTE}", "--rate", "1000000",
             "--burst", "1000000"],
            cwd=repo, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        api, api_url = _start(
            [sys.executable, "-m", "examples.enterprise_api", "--listen", "127.0.0.1:0",
             "--plain-http-peer", GATEWAY_ID, "--grant", f"read={GATEWAY_ID}",
             "--db", str(tmp / "api.sqlite3")],
            tmp / "api.log", cwd=repo,
        )  # fmt: skip
        procs.append(api)
        gateway, gateway_url = _start(
            [sys.executable, "-m", "examples.security_gateway", "--plain-http", "--listen",
             "127.0.0.1:0", "--upstream", api_url, "--allow-trust-domain",
             "enterprise-root.org", "--api-keys", str(keys)],
            tmp / "gateway.log", cwd=repo,
        )  # fmt: skip
        procs.append(gateway)
        host, port = gateway_url.split("://", 1)[1].rsplit(":", 1)
        flood = header_flood(host, int(port), gateway.pid)
        print(f"header flood (30 x 6 MB heads): RSS {flood['idle_rss_mb']:.0f} MB idle -> "
              f"{flood['peak_rss_mb']:.0f} MB peak -> {flood['after_rss_mb']:.0f} MB after; "
              f"{flood['seconds']:.1f}s; answers {flood['statuses']}")  # fmt: skip
        slow = slowloris(host, int(port), key)
        print(f"slowloris (200 slow connections, 15 s): legit client {slow['legit_requests']} "
              f"requests, {slow['legit_failures']} failed, wait p50 {slow['legit_p50_ms']:.1f} ms"
              f" max {slow['legit_max_ms']:.1f} ms; slow connections still held at the end: "
              f"{slow['slow_still_held']}; opening them: {slow['open_200_s']:.2f}s")  # fmt: skip
        log_bytes = (tmp / "gateway.log").stat().st_size
        print(f"gateway log after both: {log_bytes / 1024:.0f} KB; load average "
              f"{os.getloadavg()[0]:.1f}")  # fmt: skip
        return 0
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


# -- the orchestration --------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Side:
    name: str
    url: str
    key: str
    cafile: str | None
    gateway_pid: int
    api_pid: int


def _free_port_base() -> int:
    sys.path.insert(0, str(REPO / "tests"))
    from e2e.conftest import free_port_base  # the tests' own search for a free base

    return free_port_base()


def _deploy(*args: str, state: Path) -> str:
    argv = [sys.executable, "-m", "spire_fabric.deploy", *args, "--state-dir", str(state)]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _issue_key(keys: Path) -> str:
    argv = [sys.executable, "-m", "spire_fabric.examples.security_gateway", "issue-key",
            "--api-keys", str(keys), "--client", "bench", "--route", f"GET {ROUTE}",
            "--rate", "1000000", "--burst", "1000000"]  # fmt: skip
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def _start(
    argv: list[str], log: Path, cwd: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    out = open(log, "wb")  # noqa: SIM115 - the child writes it until we stop it
    proc = subprocess.Popen(
        argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r"listening on (http://\S+)", log.read_text())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"{argv[2]} did not start:\n{log.read_text()}")


def _round(side: Side, args: argparse.Namespace) -> dict:
    cpu0 = (_cpu_seconds(side.gateway_pid), _cpu_seconds(side.api_pid))
    argv = [sys.executable, __file__, "load", side.url, side.key, str(args.seconds),
            str(args.connections), side.cafile or "-"]  # fmt: skip
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out)
    cpu1 = (_cpu_seconds(side.gateway_pid), _cpu_seconds(side.api_pid))
    n = max(1, result["requests"])
    load_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    result["load_cpu_us"] = load_cpu / n * 1e6
    result["gateway_cpu_us"] = (cpu1[0] - cpu0[0]) / n * 1e6
    result["api_cpu_us"] = (cpu1[1] - cpu0[1]) / n * 1e6
    return result


def _mean_ms(log: Path, pattern: str, since: int) -> float:
    values = [float(m) for m in re.findall(pattern, log.read_text()[since:])]
    return statistics.fmean(values) if values else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--connections", type=int, default=8)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sf-bench-gw-"))
    state = tmp / "state"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        base = _free_port_base()
        t0 = time.monotonic()
        _deploy("up", "--port-base", str(base), state=state)
        print(f"deploy up (port base {base}) in {time.monotonic() - t0:.1f}s")
        anchor = tmp / "anchor.pem"
        _deploy("trust-anchor", "-o", str(anchor), state=state)
        keys = state / "workloads" / "security-gateway" / "api-keys.json"
        key = _issue_key(keys)
        status = json.loads(_deploy("status", "--output", "json", state=state))
        pid = {row["name"]: row["pid"] for row in status}
        mtls = Side("mtls", f"https://127.0.0.1:{base - 31000 + 30080}", key, str(anchor),
                    pid["security-gateway"], pid["enterprise-api"])  # fmt: skip

        api, api_url = _start(
            [sys.executable, "-m", "spire_fabric.examples.enterprise_api", "--listen",
             "127.0.0.1:0", "--plain-http-peer", GATEWAY_ID, "--grant", f"read={GATEWAY_ID}",
             "--db", str(tmp / "plain.sqlite3")],
            tmp / "plain-api.log",
        )  # fmt: skip
        procs.append(api)
        gateway, gateway_url = _start(
            [sys.executable, "-m", "spire_fabric.examples.security_gateway", "--plain-http",
             "--listen", "127.0.0.1:0", "--upstream", api_url, "--allow-trust-domain",
             "enterprise-root.org", "--api-keys", str(keys)],
            tmp / "plain-gateway.log",
        )  # fmt: skip
        procs.append(gateway)
        plain = Side("plain", gateway_url, key, None, gateway.pid, api.pid)

        logs = {
            "mtls": (
                state / "logs" / "security-gateway.log",
                state / "logs" / "enterprise-api.log",
            ),
            "plain": (tmp / "plain-gateway.log", tmp / "plain-api.log"),
        }
        results: dict[str, list[dict]] = {"mtls": [], "plain": []}
        for i in range(args.rounds):
            for side in (mtls, plain):
                gw_log, api_log = logs[side.name]
                marks = (len(gw_log.read_text()), len(api_log.read_text()))
                r = _round(side, args)
                r["gateway_ms"] = _mean_ms(gw_log, r"event=audit .*? ms=([0-9.]+)", marks[0])
                r["api_ms"] = _mean_ms(api_log, r"event=request .*? ms=([0-9.]+)", marks[1])
                results[side.name].append(r)
                print(f"round {i + 1} {side.name:5}: {r['rps']:7.0f} req/s  p50 "
                      f"{r['p50_ms']:5.2f} ms  p99 {r['p99_ms']:6.2f} ms  errors {r['errors']}  "
                      f"cpu/req gateway {r['gateway_cpu_us']:4.0f} us api {r['api_cpu_us']:4.0f} us"
                      f" load {r['load_cpu_us']:4.0f} us  in-gw {r['gateway_ms']:.2f} ms "
                      f"in-api {r['api_ms']:.2f} ms")  # fmt: skip

        def med(name: str, key: str) -> float:
            return statistics.median(r[key] for r in results[name])

        ratio = med("mtls", "rps") / med("plain", "rps")
        print()
        print(f"{'':6} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'gw cpu/req':>11} "
              f"{'api cpu/req':>12} {'load cpu/req':>13} {'in-gw ms':>9} "
              f"{'in-api ms':>10}")  # fmt: skip
        for name in ("mtls", "plain"):
            print(f"{name:6} {med(name, 'rps'):8.0f} {med(name, 'p50_ms'):7.2f} "
                  f"{med(name, 'p99_ms'):7.2f} {med(name, 'gateway_cpu_us'):9.0f}us "
                  f"{med(name, 'api_cpu_us'):10.0f}us {med(name, 'load_cpu_us'):11.0f}us "
                  f"{med(name, 'gateway_ms'):9.2f} "
                  f"{med(name, 'api_ms'):10.2f}")  # fmt: skip
        verdict = "meets" if ratio >= 0.8 else "MISSES"
        print(f"mtls/plain throughput: {ratio:.2f}x ({verdict} the 0.8x target); "
              f"{args.connections} keep-alive connections, {args.seconds:g}s x {args.rounds} "
              f"rounds each, {os.cpu_count()} CPUs")  # fmt: skip
        errors = sum(r["errors"] for rs in results.values() for r in rs)
        return 0 if errors == 0 else 1
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        subprocess.run(
            [sys.executable, "-m", "spire_fabric.deploy", "down", "--purge", "--state-dir",
             str(state)], capture_output=True,
        )  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["load"]:
        url, key, seconds, connections, cafile = sys.argv[2:7]
        print(json.dumps(load(url, key, float(seconds), int(connections),
                              None if cafile == "-" else cafile)))  # fmt: skip
        raise SystemExit(0)
    if sys.argv[1:2] == ["hostile"]:
        hp = argparse.ArgumentParser(prog="bench_gateway.py hostile")
        hp.add_argument("--repo", type=Path, default=REPO, help="the checkout to run")
        raise SystemExit(hostile(hp.parse_args(sys.argv[2:]).repo.resolve()))
    raise SystemExit(main())
