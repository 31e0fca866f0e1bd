"""``python -m examples.security_gateway``: admit federated callers, forward to the API.

Two mTLS legs with one SVID. Inbound, callers of the allowed (federated) trust domains are
verified against *their own* trust domain's bundle inside the handshake. Outbound, the
gateway calls enterprise-api as itself, so the API authorizes the gateway, not the far-away
caller; a caller's ``Authorization`` header (a JWT-SVID) is passed through so the API can
still see who the request is for.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import logging
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from spire_fabric.tls import (
    SpiffeClientContext,
    authorize_id,
    mtls_client_context,
    mtls_urlopen,
    peer_spiffe_id,
    serve_mtls_threaded,
)
from spire_fabric.workload import WorkloadApiError

from .._common import (
    EXIT_NO_IDENTITY,
    add_allow_args,
    authorize_allowed,
    env,
    host_port,
    open_x509_source,
    resolve_allow_args,
    setup_logging,
    stop_event,
)

NAME = "security-gateway"
log = logging.getLogger(NAME)

# Request headers worth passing upstream; everything else (Host, Connection...) is per hop.
FORWARDED_HEADERS = ("Authorization", "Accept")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.security_gateway", description=__doc__)
    upstream = env("SECURITY_GATEWAY_UPSTREAM")
    upstream_id = env("SECURITY_GATEWAY_UPSTREAM_ID")
    p.add_argument(
        "--listen",
        type=host_port,
        default=env("SECURITY_GATEWAY_LISTEN", "127.0.0.1:8080"),
        help="HOST:PORT to serve on; port 0 picks one (env SECURITY_GATEWAY_LISTEN)",
    )
    p.add_argument(
        "--upstream",
        default=upstream,
        required=upstream is None,
        help="enterprise-api base URL, https://HOST:PORT (env SECURITY_GATEWAY_UPSTREAM)",
    )
    p.add_argument(
        "--upstream-id",
        default=upstream_id,
        required=upstream_id is None,
        help="the SPIFFE ID the upstream must present (env SECURITY_GATEWAY_UPSTREAM_ID)",
    )
    add_allow_args(p, "SECURITY_GATEWAY")
    p.add_argument(
        "--identity-timeout",
        type=float,
        default=float(env("SECURITY_GATEWAY_IDENTITY_TIMEOUT", "30") or 30),
        help="seconds to wait for an SVID from the Workload API at startup",
    )
    args = p.parse_args(argv)
    resolve_allow_args(p, args, "SECURITY_GATEWAY")
    if urlsplit(args.upstream).scheme != "https":
        p.error(f"--upstream must be an https:// URL, got {args.upstream!r}")
    return args


def make_handler(
    upstream: str, to_upstream: SpiffeClientContext
) -> type[http.server.BaseHTTPRequestHandler]:
    """A handler that forwards GETs upstream over mTLS and relays status and body."""
    base = upstream.rstrip("/")

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = NAME

        def do_GET(self) -> None:
            if not self.path.startswith("/"):  # absolute-form targets would leave the API
                self.send_error(400, "only origin-form paths are forwarded")
                return
            request = urllib.request.Request(base + self.path, method="GET")
            for name in FORWARDED_HEADERS:
                if name in self.headers:
                    request.add_header(name, self.headers[name])
            try:
                with mtls_urlopen(request, to_upstream) as response:
                    status, body = response.status, response.read()
                    content_type = response.headers.get("Content-Type", "application/json")
            except urllib.error.HTTPError as e:  # the API answered: relay its refusal
                status, body = e.code, e.read()
                content_type = e.headers.get("Content-Type", "application/json")
            except (OSError, http.client.HTTPException) as e:  # incl. a refused upstream ID
                log.error("upstream %s failed: %s", base, e)
                status, body = 502, b'{"error": "upstream unavailable"}\n'
                content_type = "application/json"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", peer_spiffe_id(self.request), format % args)

    return Handler


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(NAME)
    authorizer = authorize_allowed(args.allow, args.allow_trust_domain)
    source = open_x509_source(log, args.identity_timeout)
    if source is None:
        return EXIT_NO_IDENTITY
    stop = stop_event()
    # One client context, reused: it rebuilds OpenSSL state only when the SVID rotates.
    to_upstream = mtls_client_context(source, source, authorize_id(args.upstream_id))
    host, port = args.listen
    try:
        server = serve_mtls_threaded(
            make_handler(args.upstream, to_upstream), source, source, authorizer,
            host=host, port=port,
        )  # fmt: skip
    except (WorkloadApiError, OSError) as e:
        log.error("cannot start: %s", e)
        source.close()
        return 1
    log.info(
        "listening on %s (allow %s; trust domains %s), forwarding to %s (must be %s)",
        server.url, args.allow or "-", args.allow_trust_domain or "-", args.upstream,
        args.upstream_id,
    )  # fmt: skip
    stop.wait()
    log.info("stopping")
    server.close()
    source.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
