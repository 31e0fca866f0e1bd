"""The gateway's request handler: authenticate, rate-limit, allow-list, forward, audit.

Who the caller is, in this order:

1. a SPIFFE workload that presented an X.509-SVID: the handshake already verified it
   against its own trust domain's bundle and admitted its trust domain;
2. otherwise ``Authorization: Bearer <API key>`` (``sgw_...``) from the key file;
3. otherwise ``Authorization: Bearer <JWT-SVID>`` for the gateway's audience, validated
   with the bundle of the token's own trust domain (ours or a federated one).

No credential or a bad one: 401, with a reason that says what to send but not which trust
domains or keys exist (the audit line has the detail). Too many failures from one address:
429 instead (``guard.py``); a key file that cannot be read: 503. Then the client's rate (429
with ``Retry-After``) and its route allow-list (403). The request goes upstream over the
pooled mTLS connections with the gateway's own SVID; the API answers the gateway, so what
reaches the client is the API's answer or one of: 503 (API unreachable), 502 (the API
refused the gateway's identity, in the handshake or by its table, or closed the connection
without an answer), 504 (API too slow). One audit line per request, fields cut and
escaped; lines for requests without valid credentials are rate-capped (``guard.py``). Only
idempotent requests are retried upstream.
"""

from __future__ import annotations

import http.client
import logging
import math
import posixpath
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from spire_fabric.identity import JwtSvidError, TrustDomain, parse_and_validate_jwt_svid
from spire_fabric.tls import peer_spiffe_id
from spire_fabric.workload import JwtSource

from .._http import BadRequest, ConnectionPool, JsonHandler, NoAnswer, kv
from .._metrics import Metrics
from .clients import (
    KEY_PREFIX,
    ApiKeys,
    Client,
    KeyFileError,
    KeyRefused,
    RateLimiter,
    route_allowed,
)
from .guard import FailureThrottle, LineBudget

__all__ = ["REASONS", "Policy", "gateway_metrics", "make_handler", "route_label"]

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


# The reasons of authorization decisions as metrics count them: fixed words, never the
# audit line's detail (which carries what a client sent).
REASONS = (
    "x509", "jwt", "apikey",  # allowed, by how the caller authenticated
    "bad-request", "no-credentials", "bad-credentials", "keys-unavailable",
    "throttled", "rate-limited", "route-not-allowed",
)  # fmt: skip


class Denied(Exception):
    """An answer other than forwarding: ``reason`` goes to the client, ``detail`` (default:
    the reason) only to the audit line, ``why`` (one of REASONS) to the metrics."""

    def __init__(
        self,
        status: int,
        reason: str,
        headers: dict[str, str] | None = None,
        detail: str | None = None,
        *,
        why: str,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}
        self.detail = detail or reason
        self.why = why


def route_label(routes: tuple[str, ...], method: str, path: str) -> str:
    """The first of ``routes`` ('GET /records/*') that admits the request, as the metrics'
    route label; 'other' when none does (bounded by the configured routes)."""
    for route in routes:
        if route_allowed((route,), method, path):
            return route
    return "other"


def gateway_metrics(policy: Policy) -> Metrics:
    """The gateway's metrics: its SPIFFE routes are the route labels."""
    return Metrics(routes=policy.spiffe_routes, reasons=REASONS)


BEARER = {"WWW-Authenticate": "Bearer"}
NOT_ACCEPTED = "credentials not accepted"


def make_handler(
    upstream: ConnectionPool,
    keys: ApiKeys,
    limiter: RateLimiter,
    policy: Policy,
    jwt_bundles: JwtSource | None,
    *,
    throttle: FailureThrottle | None = None,
    audit_budget: LineBudget | None = None,
    metrics: Metrics | None = None,
) -> type[JsonHandler]:
    failures = throttle if throttle is not None else FailureThrottle()
    counted = metrics if metrics is not None else gateway_metrics(policy)
    budget = audit_budget if audit_budget is not None else LineBudget()

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
                         BEARER, why="no-credentials")  # fmt: skip
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Denied(401, "expected Authorization: Bearer <token>", BEARER,
                         why="bad-credentials")
        if token.startswith(KEY_PREFIX):
            try:
                return keys.check(token)
            except KeyRefused as e:
                raise Denied(401, str(e), BEARER, why="bad-credentials") from None
            except KeyFileError as e:
                raise Denied(503, "API keys cannot be checked right now", {"Retry-After": "5"},
                             detail=f"key file unusable: {e}",
                             why="keys-unavailable") from None  # fmt: skip
        if jwt_bundles is None or policy.jwt_audience is None:
            raise Denied(401, NOT_ACCEPTED, BEARER, detail="JWT-SVIDs are not accepted here",
                         why="bad-credentials")
        try:
            svid = parse_and_validate_jwt_svid(token, jwt_bundles, [policy.jwt_audience])
        except JwtSvidError as e:
            # e names trust domains we do or do not know: for the audit line only
            raise Denied(401, NOT_ACCEPTED, BEARER, detail=str(e), why="bad-credentials") from None
        if svid.spiffe_id.trust_domain not in policy.jwt_trust_domains:
            td = svid.spiffe_id.trust_domain
            raise Denied(401, NOT_ACCEPTED, BEARER, detail=f"JWT-SVIDs of {td} are not accepted",
                         why="bad-credentials")
        return spiffe_client(str(svid.spiffe_id), "jwt")

    def audit(client: Client | None, **fields: object) -> None:
        """One audit line; for requests without valid credentials, within the budget."""
        if client is None:
            write, suppressed = budget.take()
            if suppressed:
                why = "unauthenticated requests over the audit budget"
                log.warning(kv(event="audit-suppressed", count=suppressed, reason=why))
            if not write:
                return
        log.info(kv(event="audit", client=client.name if client else None,
                    auth=client.auth if client else None, **fields))  # fmt: skip

    class Handler(JsonHandler):
        server_version = "security-gateway"

        _deferred: list[tuple[tuple[Any, ...], dict[str, Any]]] | None = None

        def reply(self, *args: Any, **kwargs: Any) -> None:
            """Inside ``handle_one`` the answer waits for the audit line, so whoever sees
            the answer can already read why it was given (tests, and operators tailing)."""
            if self._deferred is not None:
                self._deferred.append((args, kwargs))
            else:
                super().reply(*args, **kwargs)

        def address(self) -> str:
            return str(self.client_address[0]) if self.client_address else "-"

        def do_GET(self) -> None:
            self.handle_one()

        def do_POST(self) -> None:
            self.handle_one()

        def audit_rejected(self, status: int, reason: str) -> None:
            # The request never got as far as authentication: a stranger's failure.
            failures.fail(self.address())
            counted.request(None, status, 0.0)
            audit(None, method=self.command, route=self.path.split("?", 1)[0],
                  decision="deny", reason=reason, status=status, upstream_status=None,
                  ms="0.0")  # fmt: skip

        def handle_one(self) -> None:
            started = time.monotonic()
            client: Client | None = None
            path = self.path.split("?", 1)[0]
            decision, reason, status, upstream_status = "deny", "", 500, None
            self._deferred = []
            try:
                if not self.path.startswith("/"):  # absolute-form would leave the API
                    raise Denied(400, "only origin-form request targets are forwarded",
                                 why="bad-request")
                if posixpath.normpath(path) != path or "%" in path:
                    # the allow-list compares paths as text: "/records/../x" must not pass
                    # as "/records/*", whatever the upstream would make of it
                    raise Denied(400, "the path must be normalized (no '..', '.', '//', '%')",
                                 why="bad-request")
                try:
                    client = authenticate(self)
                except Denied as e:
                    if e.status == 401:
                        wait = failures.fail(self.address())
                        if wait:
                            raise Denied(429, "too many failed authentications",
                                         {"Retry-After": str(max(1, math.ceil(wait)))},
                                         detail=f"throttled: {e.detail}",
                                         why="throttled") from None  # fmt: skip
                    raise
                wait = limiter.take(client)
                if wait:
                    retry = str(max(1, math.ceil(wait))) if math.isfinite(wait) else "3600"
                    counted.rate_limited()
                    raise Denied(429, f"over {client.rate:g} requests/s", {"Retry-After": retry},
                                 why="rate-limited")
                if not route_allowed(client.routes, self.command, path):
                    raise Denied(403, f"{self.command} {path} is not among the client's routes",
                                 why="route-not-allowed")
                body = self.read_body() if self.command == "POST" else None
                decision, reason = "allow", f"{client.auth} client"
                counted.decision(True, client.auth)
                status, upstream_status = self.forward(body, client)
            except Denied as e:
                if client is None and e.status in (400, 404):
                    failures.fail(self.address())
                status, reason = e.status, e.detail
                counted.decision(False, e.why)
                self.reply(e.status, {"error": http.client.responses.get(e.status, "error"),
                                      "reason": e.reason}, e.headers)  # fmt: skip
            except BadRequest as e:
                status, reason = e.status, str(e)
                counted.decision(False, "bad-request")
                self.reply(e.status, {"error": http.client.responses.get(e.status, "error"),
                                      "reason": str(e)})  # fmt: skip
            finally:
                audit(client, method=self.command, route=path, decision=decision, reason=reason,
                      status=status, upstream_status=upstream_status,
                      ms=f"{(time.monotonic() - started) * 1000:.1f}")  # fmt: skip
                counted.request(route_label(policy.spiffe_routes, self.command, path), status,
                                time.monotonic() - started)
                answers, self._deferred = self._deferred, None
                for args, kwargs in answers[:1]:
                    self.reply(*args, **kwargs)

        def forward(self, body: bytes | None, client: Client) -> tuple[int, int | None]:
            headers = {h: v for h in FORWARDED_HEADERS if (v := self.headers.get(h)) is not None}
            headers["X-Gateway-Client"] = client.name
            try:
                answer = upstream.request(self.command, self.path, body, headers)
            except socket.gaierror as e:
                # (an OSError too: before the catch-all below, which would call it a refusal)
                return self.upstream_failed(503, "enterprise-api's name does not resolve", e)
            except ConnectionRefusedError as e:
                return self.upstream_failed(503, "enterprise-api is unreachable", e)
            except TimeoutError as e:
                return self.upstream_failed(504, "enterprise-api did not answer in time", e)
            except NoAnswer as e:
                # sent, then the connection broke: not retried unless idempotent (the pool)
                return self.upstream_failed(502, "enterprise-api closed the connection "
                                            "without an answer", e)  # fmt: skip
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
