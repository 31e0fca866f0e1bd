"""The request handler: route, authorize by the table, validate the body, answer JSON.

Every request ends in exactly one log line with the verified peer, the route, the
decision and its reason, and the status, so an operator can answer "who did what, and
why was it allowed" from the log alone.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from spire_fabric.identity import JwtSvidError, SpiffeId, parse_and_validate_jwt_svid
from spire_fabric.tls import peer_spiffe_id
from spire_fabric.workload import JwtSource, X509Source

from .._http import BadRequest, JsonHandler, kv
from .._metrics import Metrics
from .policy import ROUTES, Grants, Route, match_route
from .store import Store

__all__ = ["REASONS", "api_metrics", "make_handler"]

# The reasons of authorization decisions as metrics count them (fixed words; the log line
# keeps the detail).
REASONS = ("any-peer", "role", "missing-role", "bad-jwt", "jwt-peer-mismatch")


def api_metrics() -> Metrics:
    """The API's metrics: its route names are the route labels."""
    return Metrics(routes=[r.name for r in ROUTES], reasons=REASONS)

log = logging.getLogger("enterprise-api")

MAX_TEXT = 200
AFTER_ID = re.compile(r"[0-9]{1,18}")  # SQLite integers are 64-bit: 19 digits could overflow


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise BadRequest(f"{key!r} must be a non-empty string of at most {MAX_TEXT} characters")
    return value.strip()


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"{what} must be a finite number")
    return float(value)


def _object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def parse_record(value: object) -> tuple[str, str, float]:
    body = _object(value)
    return _text(body, "customer"), _text(body, "region"), _number(body.get("balance"), "balance")


def parse_result(value: object) -> tuple[int, list[int], dict[str, float]]:
    body = _object(value)
    through_id = body.get("through_id")
    if isinstance(through_id, bool) or not isinstance(through_id, int) or through_id < 0:
        raise BadRequest("'through_id' must be a non-negative integer")
    ids = body.get("record_ids")
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        raise BadRequest("'record_ids' must be a list of integers")
    totals = body.get("totals")
    if not isinstance(totals, dict) or not all(isinstance(k, str) for k in totals):
        raise BadRequest("'totals' must be an object of region -> number")
    return through_id, ids, {k: _number(v, f"totals[{k!r}]") for k, v in totals.items()}


def make_handler(
    store: Store,
    grants: Grants,
    *,
    source: X509Source | None,
    jwt_bundles: JwtSource | None,
    audience: str | None,
    plain_peer: SpiffeId | None = None,
    metrics: Metrics | None = None,
) -> type[JsonHandler]:
    """A handler class bound to this process's store, table and sources."""
    counted = metrics if metrics is not None else api_metrics()

    def peer_of(handler: JsonHandler) -> SpiffeId:
        if plain_peer is not None:  # benchmark baseline without TLS: see --plain-http-peer
            return plain_peer
        return peer_spiffe_id(handler.request)

    def check_jwt(authorization: str | None, peer: SpiffeId) -> tuple[int, str, str | None]:
        """(status, reason, subject): 0 when the Bearer JWT-SVID is good for this peer."""
        if jwt_bundles is None or audience is None:
            return 401, "this API was started without --jwt-audience", None
        if authorization is None:
            return 401, f"a JWT-SVID for audience {audience} is required (Bearer)", None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 401, "expected 'Authorization: Bearer <JWT-SVID>'", None
        try:
            svid = parse_and_validate_jwt_svid(token.strip(), jwt_bundles, [audience])
        except JwtSvidError as e:
            return 401, str(e), None
        if svid.spiffe_id != peer:
            return 403, f"the JWT-SVID names {svid.spiffe_id}, the TLS peer is {peer}", None
        return 0, "JWT-SVID valid", str(svid.spiffe_id)

    class Handler(JsonHandler):
        server_version = "enterprise-api"

        def do_GET(self) -> None:
            self.dispatch()

        def do_POST(self) -> None:
            self.dispatch()

        def audit_rejected(self, status: int, reason: str) -> None:
            # malformed or unsupported requests still get their one log line
            try:
                peer: SpiffeId | str | None = peer_of(self)
            except LookupError:
                peer = None
            log.info(
                kv(event="request", peer=peer, method=self.command,
                   path=self.path.split("?", 1)[0], route=None, outcome="bad-request",
                   reason=reason, status=status, ms="0.0")
            )  # fmt: skip
            counted.request(None, status, 0.0)

        def dispatch(self) -> None:
            started = time.monotonic()
            if not self.path.startswith("/"):  # origin-form only: no proxying, no "*"
                why = "only origin-form request targets are served"
                self.audit_rejected(400, why)
                self.reply(400, {"error": "bad request", "reason": why})
                return
            url = urlsplit(self.path)
            peer = peer_of(self)
            route, params, other_method = match_route(self.command, url.path)
            outcome, reason, status = "deny", "", 500
            try:
                if route is None:
                    self.discard_body()
                    status = 405 if other_method else 404
                    reason = "method not allowed" if other_method else "no such route"
                    self.reply(status, {"error": reason})
                    return
                decision = grants.decide(route, peer)
                reason = decision.reason
                why = "any-peer" if route.role is None else "role"
                if not decision.allowed:
                    counted.decision(False, "missing-role")
                    self.discard_body()
                    status = 403
                    self.reply(403, {"error": "forbidden", "route": route.name, "reason": reason})
                    return
                jwt_subject = None
                authorization = self.headers.get("Authorization")
                if route.jwt_required or authorization is not None:
                    code, why, jwt_subject = check_jwt(authorization, peer)
                    if code:
                        counted.decision(False, "bad-jwt" if code == 401 else "jwt-peer-mismatch")
                        self.discard_body()
                        status, reason = code, why
                        self.reply(
                            code,
                            {"error": "unauthorized" if code == 401 else "forbidden",
                             "route": route.name, "reason": why},
                            {"WWW-Authenticate": "Bearer"} if code == 401 else None,
                        )  # fmt: skip
                        return
                    reason += "; JWT-SVID valid"
                outcome = "allow"
                counted.decision(True, why)
                status = self.serve(route, params, url.query, peer, jwt_subject)
            except BadRequest as e:
                outcome, status, reason = "bad-request", e.status, str(e)
                self.reply(e.status, {"error": "bad request", "reason": str(e)})
            finally:
                log.info(
                    kv(event="request", peer=peer, method=self.command, path=url.path,
                       route=route.name if route else None, outcome=outcome, reason=reason,
                       status=status, ms=f"{(time.monotonic() - started) * 1000:.1f}")
                )  # fmt: skip
                counted.request(route.name if route else None, status,
                                time.monotonic() - started)  # fmt: skip

        def serve(
            self,
            route: Route,
            params: dict[str, str],
            query: str,
            peer: SpiffeId,
            jwt_subject: str | None,
        ) -> int:
            handlers: dict[str, Callable[[], tuple[int, object]]] = {
                "health": lambda: (200, health(source)),
                "records.list": lambda: (200, self.list_records(query, peer, jwt_subject)),
                "records.get": lambda: self.get_record(int(params["id"])),
                "records.create": lambda: (
                    201, store.create_record(*parse_record(self.read_json()), str(peer))
                ),
                "results.create": lambda: (
                    201, store.add_result(*parse_result(self.read_json()), str(peer))
                ),
                "results.list": lambda: (200, {"results": store.list_results()}),
            }  # fmt: skip
            status, body = handlers[route.name]()
            self.reply(status, body)
            return status

        def list_records(self, query: str, peer: SpiffeId, jwt_subject: str | None) -> object:
            raw = parse_qs(query).get("after_id", ["0"])[-1]
            if not AFTER_ID.fullmatch(raw):
                raise BadRequest("after_id must be a non-negative integer of at most 18 digits")
            body: dict[str, Any] = {"caller": str(peer), "records": store.list_records(int(raw))}
            if jwt_subject is not None:
                body["jwt"] = {"subject": jwt_subject, "audience": [audience]}
            return body

        def get_record(self, record_id: int) -> tuple[int, object]:
            record = store.get_record(record_id)
            if record is None:
                return 404, {"error": f"no record {record_id}"}
            return 200, record

    return Handler


def health(source: X509Source | None) -> dict[str, object]:
    """The SVID this process serves with *now*: after a rotation the serial changes."""
    if source is None:
        return {"status": "ok", "tls": False}
    svid = source.get_x509_svid()
    return {
        "status": "ok",
        "spiffe_id": str(svid.spiffe_id),
        "serial": format(svid.leaf.serial_number, "x"),
        "not_after": svid.leaf.not_valid_after_utc.isoformat(),
    }
