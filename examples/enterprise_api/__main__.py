"""``python -m examples.enterprise_api``: serve the enterprise API over mTLS.

The server context reads the X509Source on every handshake, so when the agent rotates the
SVID new connections get the new certificate with no restart (``/health`` shows which).
Callers are checked inside the handshake: a peer that is not allowed never reaches the
handler. A JWT-SVID in ``Authorization: Bearer`` says who a request is *for* when the TLS
peer is an intermediary (the security gateway forwards its caller's token).
"""

from __future__ import annotations

import argparse
import http.server
import json
import logging
from typing import Any

from spire_fabric.identity import JwtSvidError, parse_and_validate_jwt_svid
from spire_fabric.tls import peer_spiffe_id, serve_mtls_threaded
from spire_fabric.workload import JwtSource, WorkloadApiError, X509Source

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

NAME = "enterprise-api"
log = logging.getLogger(NAME)

RECORDS = [
    {"id": 1, "customer": "Acme Corp", "region": "eu-west", "balance": 1200.50},
    {"id": 2, "customer": "Globex", "region": "us-east", "balance": 310.00},
    {"id": 3, "customer": "Initech", "region": "ap-south", "balance": 87.25},
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.enterprise_api", description=__doc__)
    p.add_argument(
        "--listen",
        type=host_port,
        default=env("ENTERPRISE_API_LISTEN", "127.0.0.1:8443"),
        help="HOST:PORT to serve on; port 0 picks one (env ENTERPRISE_API_LISTEN)",
    )
    add_allow_args(p, "ENTERPRISE_API")
    p.add_argument(
        "--jwt-audience",
        default=env("ENTERPRISE_API_JWT_AUDIENCE"),
        help="also accept Bearer JWT-SVIDs for this audience on /records "
        "(env ENTERPRISE_API_JWT_AUDIENCE); without it a Bearer token is refused",
    )
    p.add_argument(
        "--identity-timeout",
        type=float,
        default=float(env("ENTERPRISE_API_IDENTITY_TIMEOUT", "30") or 30),
        help="seconds to wait for an SVID from the Workload API at startup",
    )
    args = p.parse_args(argv)
    resolve_allow_args(p, args, "ENTERPRISE_API")
    return args


def make_handler(
    source: X509Source, jwt_bundles: JwtSource | None, audience: str | None
) -> type[http.server.BaseHTTPRequestHandler]:
    """An http.server handler bound to this process's sources (read per request)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = NAME

        def do_GET(self) -> None:
            if self.path == "/health":
                self.reply(200, health(source))
            elif self.path == "/records":
                self.records()
            else:
                self.reply(404, {"error": f"no such resource {self.path}"})

        def records(self) -> None:
            caller = str(peer_spiffe_id(self.request))
            body: dict[str, Any] = {"caller": caller, "records": RECORDS}
            authorization = self.headers.get("Authorization")
            if authorization is not None:
                try:
                    body["jwt"] = check_bearer(authorization, jwt_bundles, audience)
                except JwtSvidError as e:
                    self.log_message("refused its JWT-SVID: %s", e)
                    self.reply(401, {"error": str(e)}, {"WWW-Authenticate": "Bearer"})
                    return
            self.reply(200, body)

        def reply(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body, indent=1).encode() + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            # http.server logs to stderr; ours go to stdout with the caller's SPIFFE ID.
            log.info("%s %s", peer_spiffe_id(self.request), format % args)

    return Handler


def health(source: X509Source) -> dict[str, str]:
    """The SVID this process serves with *now*: after a rotation the serial changes."""
    svid = source.get_x509_svid()
    return {
        "spiffe_id": str(svid.spiffe_id),
        "serial": format(svid.leaf.serial_number, "x"),
        "not_after": svid.leaf.not_valid_after_utc.isoformat(),
    }


def check_bearer(
    authorization: str, jwt_bundles: JwtSource | None, audience: str | None
) -> dict[str, object]:
    """Validate ``Bearer <JWT-SVID>`` against the JWT bundle of the token's own trust domain
    (federated bundles arrive through the Workload API like our own). Raises JwtSvidError."""
    if jwt_bundles is None or audience is None:
        raise JwtSvidError("jwtsvid: this API was started without --jwt-audience")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise JwtSvidError("jwtsvid: expected 'Authorization: Bearer <JWT-SVID>'")
    svid = parse_and_validate_jwt_svid(token.strip(), jwt_bundles, [audience])
    return {"subject": str(svid.spiffe_id), "audience": list(svid.audience)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(NAME)
    authorizer = authorize_allowed(args.allow, args.allow_trust_domain)
    source = open_x509_source(log, args.identity_timeout)
    if source is None:
        return EXIT_NO_IDENTITY
    stop = stop_event()
    jwt_bundles = None
    try:
        if args.jwt_audience:
            jwt_bundles = JwtSource(first_update_timeout=args.identity_timeout)
        host, port = args.listen
        handler = make_handler(source, jwt_bundles, args.jwt_audience)
        server = serve_mtls_threaded(handler, source, source, authorizer, host=host, port=port)
    except (WorkloadApiError, OSError) as e:
        log.error("cannot start: %s", e)
        if jwt_bundles is not None:
            jwt_bundles.close()
        source.close()
        return 1
    log.info(
        "listening on %s (allow %s; trust domains %s; JWT audience %s)",
        server.url, args.allow or "-", args.allow_trust_domain or "-", args.jwt_audience or "-",
    )  # fmt: skip
    stop.wait()
    log.info("stopping")
    server.close()
    if jwt_bundles is not None:
        jwt_bundles.close()
    source.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
