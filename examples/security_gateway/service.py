"""The gateway's request handler: authenticate, rate-limit, allow-list, forward, audit.

Who the caller is, in this order:

1. a SPIFFE workload that presented an X.509-SVID: the handshake already verified it
   against its own trust domain's bundle and admitted its trust domain;
2. otherwise ``Authorization: Bearer <API key>`` (``sgw_...``) from the key file;
3. otherwise ``Authorization: Bearer <JWT-SVID>`` for the gateway's audience, validated
   with the bundle of the token's own trust domain (ours or a federated one).

No credential or a bad one: 401. Then the client's rate (429 with ``Retry-After``) and its
route allow-list (403). The request goes upstream over the pooled mTLS connections with the
gateway's own SVID; the API answers the gateway, so what reaches the client is the API's
answer or one of: 503 (API unreachable), 502 (the API refused the gateway's identity, in
the handshake or by its table), 504 (API too slow). One audit line per request.
"""

from __future__ import annotations

import http.client
import logging
import math
import posixpath
import ssl
import time
from dataclasses import dataclass

from spire_fabric.identity import JwtSvidError, TrustDomain, parse_and_validate_jwt_svid
from spire_fabric.tls import peer_spiffe_id
from spire_fabric.workload import JwtSource

from .._http import MAX_BODY, BadRequest, ConnectionPool, JsonHandler, kv
from .clients import KEY_PREFIX, ApiKeys, Client, RateLimiter, route_allowed

__all__ = ["Policy", "make_handler"]

log = logging.getLogger("security-gateway")

# Request headers passed upstream. Authorization never is: an API key must not leave the
# gateway, and a JWT-SVID for the gateway's audience means nothing to the API.
FORWARDED_HEADERS = ("Content-Type", "Accept")


@dataclass(frozen=True)
class Policy:
    """What the gateway grants to callers that are not API-key clients."""

    spiffe_routes: tuple[str, ...]  # X.509-SVID and JWT-SVID callers
    spiffe_rate: float
    spiffe_burst: int
    jwt_audience: str | None
    jwt_trust_domains: frozenset[TrustDomain]


class Denied(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def make_handler(
    upstream: ConnectionPool,
    keys: ApiKeys,
    limiter: RateLimiter,
    policy: Policy,
    jwt_bundles: JwtSource | None,
) -> type[JsonHandler]:
    def spiffe_client(name: str, auth: str) -> Client:
        return Client(name, auth, policy.spiffe_routes, policy.spiffe_rate, policy.spiffe_burst)

    def authenticate(handler: JsonHandler) -> Client:
        try:
            return spiffe_client(str(peer_spiffe_id(handler.request)), "x509")
        except LookupError:
            pass  # no client certificate (or plain HTTP): authenticate by header
        authorization = handler.headers.get("Authorization")
        if authorization is None:
            raise Denied(401, "no credentials: send Authorization: Bearer <API key or JWT-SVID>",
                         {"WWW-Authenticate": "Bearer"})  # fmt: skip
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Denied(401, "expected Authorization: Bearer <token>",
                         {"WWW-Authenticate": "Bearer"})  # fmt: skip
        if token.startswith(KEY_PREFIX):
            client = keys.authenticate(token)
            if client is None:
                raise Denied(401, "unknown API key", {"WWW-Authenticate": "Bearer"})
            return client
        if jwt_bundles is None or policy.jwt_audience is None:
            raise Denied(401, "JWT-SVIDs are not accepted here", {"WWW-Authenticate": "Bearer"})
        try:
            svid = parse_and_validate_jwt_svid(token, jwt_bundles, [policy.jwt_audience])
        except JwtSvidError as e:
            raise Denied(401, str(e), {"WWW-Authenticate": "Bearer"}) from None
        if svid.spiffe_id.trust_domain not in policy.jwt_trust_domains:
            raise Denied(401, f"JWT-SVIDs of {svid.spiffe_id.trust_domain} are not accepted")
        return spiffe_client(str(svid.spiffe_id), "jwt")

    class Handler(JsonHandler):
        server_version = "security-gateway"

        def do_GET(self) -> None:
            self.handle_one()

        def do_POST(self) -> None:
            self.handle_one()

        def handle_one(self) -> None:
            started = time.monotonic()
            client: Client | None = None
            path = self.path.split("?", 1)[0]
            decision, reason, status, upstream_status = "deny", "", 500, None
            try:
                if not self.path.startswith("/"):  # absolute-form would leave the API
                    raise Denied(400, "only origin-form request targets are forwarded")
                if posixpath.normpath(path) != path or "%" in path:
                    # the allow-list compares paths as text: "/records/../x" must not pass
                    # as "/records/*", whatever the upstream would make of it
                    raise Denied(400, "the path must be normalized (no '..', '.', '//', '%')")
                client = authenticate(self)
                wait = limiter.take(client)
                if wait:
                    retry = str(max(1, math.ceil(wait))) if math.isfinite(wait) else "3600"
                    raise Denied(429, f"over {client.rate:g} requests/s", {"Retry-After": retry})
                if not route_allowed(client.routes, self.command, path):
                    raise Denied(403, f"{self.command} {path} is not among the client's routes")
                body = self.read_json_bytes() if self.command == "POST" else None
                decision, reason = "allow", f"{client.auth} client"
                status, upstream_status = self.forward(body, client)
            except Denied as e:
                self.discard_body()
                status, reason = e.status, e.reason
                self.reply(e.status, {"error": http.client.responses.get(e.status, "error"),
                                      "reason": e.reason}, e.headers)  # fmt: skip
            except BadRequest as e:
                status, reason = 400, str(e)
                self.reply(400, {"error": "bad request", "reason": str(e)})
            finally:
                log.info(
                    kv(event="audit", client=client.name if client else None,
                       auth=client.auth if client else None, method=self.command, route=path,
                       decision=decision, reason=reason, status=status,
                       upstream_status=upstream_status,
                       ms=f"{(time.monotonic() - started) * 1000:.1f}")
                )  # fmt: skip

        def read_json_bytes(self) -> bytes:
            """The body, passed through as bytes; only its size is the gateway's concern
            (the API validates the JSON and answers 400 itself)."""
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise BadRequest("bad Content-Length") from None
            if length < 0 or length > MAX_BODY:
                self.close_connection = True
                raise BadRequest(f"body must be 0..{MAX_BODY} bytes")
            return self.rfile.read(length) if length else b""

        def forward(self, body: bytes | None, client: Client) -> tuple[int, int | None]:
            headers = {h: self.headers[h] for h in FORWARDED_HEADERS if h in self.headers}
            headers["X-Gateway-Client"] = client.name
            try:
                answer = upstream.request(self.command, self.path, body, headers)
            except ConnectionRefusedError as e:
                return self.upstream_failed(503, "enterprise-api is unreachable", e)
            except TimeoutError as e:
                return self.upstream_failed(504, "enterprise-api did not answer in time", e)
            except (ssl.SSLError, OSError, http.client.HTTPException) as e:
                # A new connection closed in or right after the handshake: one side refused
                # the other's identity (the API's table refusal is the 403 below).
                return self.upstream_failed(502, "enterprise-api refused the connection", e)
            if answer.status in (401, 403):
                log.warning(kv(event="upstream-refused", status=answer.status,
                               body=answer.body[:200].decode(errors="replace")))  # fmt: skip
                self.reply(502, {"error": "bad gateway",
                                 "reason": "enterprise-api refused the gateway's identity "
                                           f"for this route (HTTP {answer.status})"})  # fmt: skip
                return 502, answer.status
            self.reply(
                answer.status,
                None,
                raw=answer.body,
                content_type=answer.headers.get("Content-Type", "application/json"),
            )
            return answer.status, answer.status

        def upstream_failed(self, status: int, reason: str, e: BaseException) -> tuple[int, None]:
            log.error(kv(event="upstream-failed", status=status,
                         error=f"{type(e).__name__}: {e}"))  # fmt: skip
            self.reply(status, {"error": http.client.responses[status], "reason": reason},
                       {"Retry-After": "1"} if status == 503 else None)  # fmt: skip
            return status, None

    return Handler
