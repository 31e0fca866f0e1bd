"""``python -m examples.data_processor``: turn new records into results, on an interval.

Each cycle asks enterprise-api for the records it has not processed yet
(``GET /records?after_id=N``), adds their balances to the running total per region and
posts the result (``POST /results``) with a JWT-SVID for the API's audience: the API
requires both the mTLS identity and the token for that route. On start it resumes from the
newest result the API holds, so a restart neither loses nor double-counts a record.

One pool of keep-alive connections for the whole run: the client context presents the
current SVID on each new connection and the pool retires connections after
``--max-connection-age``, so rotations need no restart. ``--health-listen`` serves
``/health`` (plain HTTP, loopback) with the processed-batches counter; ``--metrics-listen``
serves Prometheus ``/metrics``: the calls it makes by route and status, their latency, and
its SVID.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from spire_fabric.tls import authorize_id, mtls_client_context
from spire_fabric.workload import JwtSource, WorkloadApiError

from .._common import (
    EXIT_NO_IDENTITY,
    add_identity_timeout_arg,
    add_metrics_listen_arg,
    add_number_arg,
    env,
    host_port,
    open_x509_source,
    setup_logging,
    stop_event,
)
from .._http import ConnectionPool, JsonHandler, PlainHttpServer, Response, kv
from .._metrics import Metrics, serve_metrics

NAME = "data-processor"
log = logging.getLogger(NAME)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.data_processor", description=__doc__)
    api = env("DATA_PROCESSOR_API")
    api_id = env("DATA_PROCESSOR_API_ID")
    p.add_argument(
        "--api",
        default=api,
        required=api is None,
        help="enterprise-api base URL, https://HOST:PORT (env DATA_PROCESSOR_API)",
    )
    p.add_argument(
        "--api-id",
        default=api_id,
        required=api_id is None,
        help="the SPIFFE ID enterprise-api must present (env DATA_PROCESSOR_API_ID)",
    )
    p.add_argument(
        "--jwt-audience",
        default=env("DATA_PROCESSOR_JWT_AUDIENCE"),
        help="audience of the JWT-SVID sent with results (env DATA_PROCESSOR_JWT_AUDIENCE; "
        "default: --api-id)",
    )
    add_number_arg(
        p,
        "--interval",
        "DATA_PROCESSOR_INTERVAL",
        2.0,
        "seconds between cycles",
    )
    add_number_arg(
        p,
        "--count",
        "DATA_PROCESSOR_COUNT",
        0,
        "stop after this many cycles, exiting 1 if any failed; 0 = run until SIGTERM",
    )
    p.add_argument(
        "--health-listen",
        type=host_port,
        default=env("DATA_PROCESSOR_HEALTH_LISTEN"),
        help="HOST:PORT for a plain-HTTP /health with counters (env "
        "DATA_PROCESSOR_HEALTH_LISTEN); off by default",
    )
    add_number_arg(
        p,
        "--max-connection-age",
        "DATA_PROCESSOR_MAX_CONNECTION_AGE",
        60.0,
        "seconds a keep-alive connection is reused before a new handshake",
    )
    add_identity_timeout_arg(p, "DATA_PROCESSOR")
    add_metrics_listen_arg(p, "DATA_PROCESSOR")
    args = p.parse_args(argv)
    if urlsplit(args.api).scheme != "https":
        p.error(f"--api must be an https:// URL, got {args.api!r}")
    args.jwt_audience = args.jwt_audience or args.api_id
    return args


@dataclass
class Progress:
    """What the processor has done; read by /health from another thread."""

    through_id: int = 0
    totals: dict[str, float] = field(default_factory=dict)
    cycles: int = 0
    failed_cycles: int = 0
    processed_batches: int = 0
    processed_records: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "status": "ok",
                "cycles": self.cycles,
                "failed_cycles": self.failed_cycles,
                "processed_batches": self.processed_batches,
                "processed_records": self.processed_records,
                "through_id": self.through_id,
                "totals": dict(self.totals),
            }


class ApiError(Exception):
    """The API answered, but not with what a cycle needs."""


def _expect(response: Any, status: int, what: str) -> Any:
    if response.status != status:
        raise ApiError(f"{what}: HTTP {response.status}: {response.body[:200]!r}")
    try:
        return response.json()
    except ValueError as e:
        raise ApiError(f"{what}: not JSON: {e}") from None


def add_totals(totals: dict[str, float], records: list[dict[str, Any]]) -> dict[str, float]:
    """Running balance per region, rounded to cents so a reader can compare exactly."""
    out = dict(totals)
    for r in records:
        out[r["region"]] = round(out.get(r["region"], 0.0) + float(r["balance"]), 2)
    return out


# The calls a cycle makes: the route labels of the processor's metrics.
CALLS = ("GET /results", "GET /records", "POST /results")


def processor_metrics() -> Metrics:
    """The processor's metrics: the requests it makes, by call (it serves none)."""
    return Metrics(routes=CALLS)


class Processor:
    def __init__(
        self,
        args: argparse.Namespace,
        pool: ConnectionPool,
        jwt: JwtSource,
        me: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.args = args
        self.pool = pool
        self.jwt = jwt
        self.me = me
        self.progress = Progress()
        self.metrics = metrics if metrics is not None else processor_metrics()

    def call(
        self,
        route: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One request through the pool, counted by ``route`` (one of CALLS); a call with
        no answer is counted with status 'other'."""
        method = route.split(" ", 1)[0]
        started = time.monotonic()
        status = 0
        try:
            answer = self.pool.request(method, target, body, headers)
            status = answer.status
            return answer
        finally:
            self.metrics.request(route, status, time.monotonic() - started)

    def resume(self) -> None:
        body = _expect(self.call("GET /results", "/results"), 200, "GET /results")
        mine = [r for r in body.get("results", []) if r.get("posted_by") == self.me]
        if mine:
            latest = mine[0]
            with self.progress.lock:
                self.progress.through_id = int(latest["through_id"])
                self.progress.totals = {k: float(v) for k, v in latest["totals"].items()}
        log.info(kv(event="resume", through_id=self.progress.through_id,
                    totals=json.dumps(self.progress.totals, sort_keys=True)))  # fmt: skip

    def cycle(self) -> int:
        """One fetch-compute-post; returns how many records it processed."""
        after = self.progress.through_id
        body = _expect(self.call("GET /records", f"/records?after_id={after}"), 200,
                       "GET /records")  # fmt: skip
        records = [r for r in body.get("records", []) if int(r["id"]) > after]
        if not records:
            return 0
        totals = add_totals(self.progress.totals, records)
        through_id = max(int(r["id"]) for r in records)
        token = self.jwt.fetch_jwt_svid(self.args.jwt_audience, subject=self.me).token
        result = {
            "through_id": through_id,
            "record_ids": [int(r["id"]) for r in records],
            "totals": totals,
        }
        _expect(
            self.call(
                "POST /results", "/results", json.dumps(result).encode(),
                {"Authorization": f"Bearer {token}"},
            ),
            201, "POST /results",
        )  # fmt: skip
        with self.progress.lock:
            self.progress.through_id = through_id
            self.progress.totals = totals
            self.progress.processed_batches += 1
            self.progress.processed_records += len(records)
        return len(records)

    def run(self, stop: threading.Event) -> None:
        p = self.progress
        resumed = False
        while not (self.args.count and p.cycles >= self.args.count):
            if p.cycles and stop.wait(self.args.interval):
                break
            started = time.monotonic()
            with p.lock:
                p.cycles += 1
            try:
                if not resumed:
                    self.resume()
                    resumed = True
                n = self.cycle()
            except (OSError, ApiError, http.client.HTTPException, WorkloadApiError) as e:
                with p.lock:
                    p.failed_cycles += 1
                log.error(kv(event="cycle", cycle=p.cycles, outcome="FAILED",
                             error=f"{type(e).__name__}: {e}"))  # fmt: skip
                continue
            log.info(
                kv(event="cycle", cycle=p.cycles, outcome="ok", new_records=n,
                   through_id=p.through_id, batches=p.processed_batches,
                   connections=self.pool.opened,
                   ms=f"{(time.monotonic() - started) * 1000:.1f}")
            )  # fmt: skip


def serve_health(address: tuple[str, int], progress: Progress) -> PlainHttpServer:
    class Health(JsonHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self.reply(200, progress.snapshot())
            else:
                self.reply(404, {"error": "no such route"})

    server = PlainHttpServer(Health, address)
    log.info(kv(event="health", url=f"{server.url}/health"))
    return server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(NAME)
    source = open_x509_source(log, args.identity_timeout)
    if source is None:
        return EXIT_NO_IDENTITY
    stop = stop_event()
    try:
        jwt = JwtSource(first_update_timeout=args.identity_timeout)
    except WorkloadApiError as e:
        log.error("cannot start: %s", e)
        source.close()
        return 1
    me = str(source.get_x509_svid().spiffe_id)
    context = mtls_client_context(source, source, authorize_id(args.api_id))
    pool = ConnectionPool(args.api, context, size=2, max_age=args.max_connection_age)
    metrics = processor_metrics()
    metrics.watch_svid(source)
    processor = Processor(args, pool, jwt, me, metrics)
    health = serve_health(args.health_listen, processor.progress) if args.health_listen else None
    metrics_server = serve_metrics(metrics, args.metrics_listen) if args.metrics_listen else None
    if metrics_server is not None:
        log.info(kv(event="metrics", url=f"{metrics_server.url}/metrics"))
    try:
        processor.run(stop)
    finally:
        if metrics_server is not None:
            metrics_server.close()
        if health is not None:
            health.close()
        pool.close()
        jwt.close()
        source.close()
    p = processor.progress
    log.info("stopped after %d cycle(s), %d failed, %d batch(es) processed",
             p.cycles, p.failed_cycles, p.processed_batches)  # fmt: skip
    # A bounded run is a check (non-zero if any cycle failed); an endless one ends by SIGTERM.
    return 1 if p.failed_cycles and args.count else 0


if __name__ == "__main__":
    raise SystemExit(main())
