"""The one keep-alive HTTP load generator of the benchmarks (gateway, sidecar).

Each of ``connections`` threads holds one HTTP/1.1 connection and sends requests back to
back for ``seconds``, after a common start half a second out (so connecting is not
measured). A non-200 answer or a broken connection counts as an error and the thread
reconnects. It runs in a process of its own, so the client's CPU does not share an
interpreter with what it measures.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Mapping


def keepalive_load(
    connect: Callable[[], http.client.HTTPConnection],
    path: str,
    seconds: float,
    connections: int,
    headers: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Requests, errors, requests/s and p50/p99 latency (ms) of ``GET path``."""
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    start_at = time.monotonic() + 0.5
    stop_at = start_at + seconds

    def open_one() -> http.client.HTTPConnection:
        conn = connect()
        if conn.sock is None:
            conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def worker(i: int) -> None:
        conn = open_one()
        while time.monotonic() < start_at:
            time.sleep(0.01)
        mine = latencies[i]
        while (t0 := time.monotonic()) < stop_at:
            try:
                conn.request("GET", path, headers=dict(headers or {}))
                answer = conn.getresponse()
                answer.read()
                if answer.status != 200:
                    errors[i] += 1
                if answer.will_close:
                    conn.close()
                    conn = open_one()
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                conn.close()
                conn = open_one()
                continue
            mine.append(time.monotonic() - t0)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ordered = sorted(x for lat in latencies for x in lat)
    n = len(ordered)
    return {
        "requests": n,
        "errors": sum(errors),
        "rps": n / seconds,
        "p50_ms": ordered[n // 2] * 1000 if n else 0.0,
        "p99_ms": ordered[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
    }
