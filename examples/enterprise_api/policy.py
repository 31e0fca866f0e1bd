"""Who may call which route: the one authorization table of enterprise-api.

The TLS handshake proves *who* the peer is (its chain verified against the bundle of its
own trust domain); this table alone decides *what* it may do, so every decision is made,
and logged, in one place. A route names a role; ``--grant ROLE=WHO`` gives the role to a
SPIFFE ID or to every ID of a trust domain. The deployment grants:

=================  =============================  =====================================
role               routes                         granted to (enterprise preset)
=================  =============================  =====================================
read               GET /records, /records/{id},   security-gateway, data-processor,
                   GET /results, GET /inventory   every ID of enterprise-root.org
create             POST /records                  security-gateway
report             POST /results (+ JWT-SVID      data-processor
                   for the API's audience)
(any peer)         GET /health                    every verified peer
=================  =============================  =====================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from spire_fabric.identity import SpiffeId, TrustDomain

__all__ = ["ROLES", "ROUTES", "Decision", "Grants", "Route", "match_route"]

ROLES = ("read", "create", "report")


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # "/records/{id}": {id} is a positive integer
    name: str  # what logs and 403s call it
    role: str | None  # None: any verified peer
    jwt_required: bool = False  # also a Bearer JWT-SVID for our audience, naming the peer

    @property
    def regex(self) -> re.Pattern[str]:
        return re.compile("^" + self.pattern.replace("{id}", r"(?P<id>[1-9][0-9]{0,17})") + "$")


ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", "health", None),
    Route("GET", "/records", "records.list", "read"),
    Route("GET", "/records/{id}", "records.get", "read"),
    Route("POST", "/records", "records.create", "create"),
    Route("GET", "/results", "results.list", "read"),
    # read from inventory (nginx, no SPIFFE code) through its sidecar, over mTLS as us
    Route("GET", "/inventory", "inventory.list", "read"),
    Route("POST", "/results", "results.create", "report", jwt_required=True),
)


def match_route(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """(route, path parameters, path exists with another method)."""
    other_method = False
    for route in ROUTES:
        m = route.regex.match(path)
        if m is None:
            continue
        if route.method == method:
            return route, m.groupdict(), False
        other_method = True
    return None, {}, other_method


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


@dataclass
class Grants:
    """Role → SPIFFE IDs and trust domains holding it; parsed up front so a typo in a
    ``--grant`` fails at startup, not at the first request."""

    ids: dict[str, set[SpiffeId]] = field(default_factory=dict)
    trust_domains: dict[str, set[TrustDomain]] = field(default_factory=dict)

    @classmethod
    def parse(cls, grants: Iterable[str]) -> Grants:
        out = cls()
        for grant in grants:
            role, sep, who = grant.partition("=")
            if not sep or role not in ROLES or not who:
                raise ValueError(
                    f"--grant {grant!r}: expected ROLE=SPIFFE_ID or ROLE=TRUST_DOMAIN "
                    f"with ROLE one of {', '.join(ROLES)}"
                )
            if who.startswith("spiffe://"):
                out.ids.setdefault(role, set()).add(SpiffeId.parse(who))
            else:
                out.trust_domains.setdefault(role, set()).add(TrustDomain.parse(who))
        return out

    def holds(self, peer: SpiffeId, role: str) -> bool:
        return peer in self.ids.get(role, ()) or peer.trust_domain in self.trust_domains.get(
            role, ()
        )

    def decide(self, route: Route, peer: SpiffeId) -> Decision:
        """The table's answer before any JWT check (that needs the request's header)."""
        if route.role is None:
            return Decision(True, "any verified peer")
        if self.holds(peer, route.role):
            return Decision(True, f"holds role {route.role}")
        return Decision(False, f"{peer} does not hold role {route.role!r} needed for {route.name}")

    def describe(self) -> str:
        parts = []
        for role in ROLES:
            who = sorted(map(str, self.ids.get(role, ()))) + sorted(
                f"*.{td}" for td in map(str, self.trust_domains.get(role, ()))
            )
            parts.append(f"{role}=[{' '.join(who)}]")
        return " ".join(parts)
