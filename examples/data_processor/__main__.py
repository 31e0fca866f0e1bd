"""``python -m examples.data_processor``: call enterprise-api's ``/records`` over mTLS.

One client context for the whole run: it presents the current SVID and re-reads the
source only when the SVID or bundles rotate. Each call opens a new connection, so the
server serial logged per call shows the API's SVID rotating under live traffic.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import threading
import time
from urllib.parse import urlsplit

from spire_fabric.tls import SpiffeClientContext, authorize_id, mtls_client_context, peer_chain
from spire_fabric.workload import X509Source

from .._common import EXIT_NO_IDENTITY, env, open_x509_source, setup_logging, stop_event

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
        "--interval",
        type=float,
        default=float(env("DATA_PROCESSOR_INTERVAL", "2") or 2),
        help="seconds between calls (env DATA_PROCESSOR_INTERVAL; default %(default)s)",
    )
    p.add_argument(
        "--count",
        type=int,
        default=int(env("DATA_PROCESSOR_COUNT", "0") or 0),
        help="stop after this many calls, exiting 1 if any failed; 0 = run until SIGTERM",
    )
    p.add_argument(
        "--identity-timeout",
        type=float,
        default=float(env("DATA_PROCESSOR_IDENTITY_TIMEOUT", "30") or 30),
        help="seconds to wait for an SVID from the Workload API at startup",
    )
    args = p.parse_args(argv)
    if urlsplit(args.api).scheme != "https":
        p.error(f"--api must be an https:// URL, got {args.api!r}")
    return args


def fetch_records(api: str, context: SpiffeClientContext) -> tuple[dict[str, object], str]:
    """GET /records; returns the JSON body and the serial of the certificate the API
    presented on this very connection. Raises OSError / ValueError on failure."""
    url = urlsplit(api)
    conn = http.client.HTTPSConnection(url.hostname or "", url.port or 443, context=context,
                                       timeout=10)  # fmt: skip
    try:
        conn.connect()  # the handshake verifies and authorizes the API's chain
        serial = format(peer_chain(conn.sock)[0].serial_number, "x")
        conn.request("GET", url.path.rstrip("/") + "/records")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}: {body[:200]!r}")
        return json.loads(body), serial
    finally:
        conn.close()


def run(args: argparse.Namespace, source: X509Source, stop: threading.Event) -> tuple[int, int]:
    """The call loop; returns (calls made, calls failed)."""
    context = mtls_client_context(source, source, authorize_id(args.api_id))
    calls = failures = 0
    while not (args.count and calls >= args.count):
        if calls and stop.wait(args.interval):
            break
        calls += 1
        started = time.monotonic()
        try:
            body, serial = fetch_records(args.api, context)
        except (OSError, ValueError, http.client.HTTPException) as e:
            failures += 1
            log.error("call %d FAILED: %s: %s", calls, type(e).__name__, e)
            continue
        records = body.get("records")
        log.info(
            "call %d ok: %d records from %s (server serial %s) in %.0f ms, it sees me as %s",
            calls, len(records) if isinstance(records, list) else -1, args.api_id, serial,
            (time.monotonic() - started) * 1000, body.get("caller"),
        )  # fmt: skip
    return calls, failures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(NAME)
    source = open_x509_source(log, args.identity_timeout)
    if source is None:
        return EXIT_NO_IDENTITY
    stop = stop_event()
    try:
        calls, failures = run(args, source, stop)
    finally:
        source.close()
    log.info("stopped after %d call(s), %d failed", calls, failures)
    # A bounded run is a check (non-zero if any call failed); an endless one ends by SIGTERM.
    return 1 if failures and args.count else 0


if __name__ == "__main__":
    raise SystemExit(main())
