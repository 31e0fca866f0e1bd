"""Checks that prove a local deployment works, against SPIRE's own APIs and real handshakes.

Each check fails when its own thing is broken and (as far as the dependency allows) only
then: a killed agent turns its `agent-live` check and its workloads' SVID checks red, not
the servers'. Nothing here trusts our own bookkeeping where SPIRE can be asked instead.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509

from spire_fabric.federation import HTTPS_SPIFFE, fetch_bundle
from spire_fabric.identity import (
    BundleSet,
    SpiffeId,
    TrustDomain,
    X509Bundle,
    X509Svid,
    parse_and_validate_jwt_svid,
    verify_x509_svid,
)
from spire_fabric.runtime.local.deployment import (
    LocalDeployment,
    entry_owner,
    http_ok,
)
from spire_fabric.server import NotFoundError, plan_entries
from spire_fabric.tls import (
    authorize_id,
    connect_mtls,
    mtls_client_context,
    mtls_server_context,
    mtls_urlopen,
)
from spire_fabric.topology import Server, Workload
from spire_fabric.verify._report import CheckResult, Report
from spire_fabric.workload import WorkloadApiClient, X509Context

__all__ = ["verify_deployment"]

TTL_TOLERANCE = timedelta(seconds=60)


class CheckFailed(Exception):
    """Raised inside a check with the reason shown in the report."""


@dataclass(frozen=True)
class _StaticSvid:
    svid: X509Svid

    def get_x509_svid(self) -> X509Svid:
        return self.svid


def verify_deployment(deployment: LocalDeployment) -> Report:
    checks = list(_run_checks(deployment))
    return Report(deployment.topology.name, tuple(checks))


def _run_checks(d: LocalDeployment) -> Iterator[CheckResult]:
    t = d.local
    contexts: dict[str, X509Context | Exception] = {}

    def context_of(workload: Workload) -> X509Context:
        cached = contexts.get(workload.name)
        if cached is None:
            try:
                with WorkloadApiClient(
                    f"unix://{d.paths.agent_socket(workload.agent)}", wait_for_socket=0.5
                ) as client:
                    cached = client.fetch_x509_context(timeout=5)
            except Exception as err:
                cached = err
            contexts[workload.name] = cached
        if isinstance(cached, Exception):
            raise CheckFailed(f"agent {workload.agent} gave no SVID: {cached}")
        return cached

    def svid_of(workload: Workload) -> X509Svid:
        for svid in context_of(workload).svids:
            if str(svid.spiffe_id) == workload.spiffe_id:
                return svid
        raise CheckFailed(f"agent {workload.agent} does not issue {workload.spiffe_id}")

    yield _check(
        "supervisor",
        "supervisor running (restarts what crashes)",
        lambda: f"pid {d.supervisor.pid}" if d.supervisor.pid else _fail("not running"),
    )
    for s in t.servers:
        yield _check(
            f"server-live:{s.name}", f"{s.name} live and ready", lambda s=s: _server_live(s)
        )
        yield _check(
            f"datastore:{s.name}",
            f"{s.name} datastore reachable",
            lambda s=s: _datastore(d, s),
        )
    for a in t.agents:
        yield _check(
            f"agent-attested:{a.name}",
            f"{a.name} attested and not banned",
            lambda a=a: _agent_attested(d, a.name),
        )
        yield _check(
            f"agent-live:{a.name}",
            f"{a.name} live",
            lambda a=a: "healthy" if d.agent_healthy(a) else _fail("agent is not healthy"),
        )
    for s in t.servers:
        yield _check(
            f"entries:{s.name}",
            f"{s.name} holds every expected entry, unchanged",
            lambda s=s: _entries(d, s),
        )
    for fed in t.federations:
        yield _check(
            f"federated-bundle:{fed.server}->{fed.trust_domain}",
            f"{fed.server} holds the current bundle of {fed.trust_domain}",
            lambda fed=fed: _federated_bundle(d, fed.server, fed.trust_domain),
        )
    for s in t.servers:
        if s.bundle_endpoint is not None:
            yield _check(
                f"bundle-endpoint:{s.name}",
                f"{s.name} serves its SPIFFE bundle ({s.bundle_endpoint.profile})",
                lambda s=s: _bundle_endpoint(d, s),
            )
    root = d.root_ca()
    for w in t.workloads:
        yield _check(
            f"workload-svid:{w.name}",
            f"{w.name} holds {w.spiffe_id}",
            lambda w=w: _workload_svid(d, w, svid_of(w), root.certificate if root else None),
        )
    for server_w, client_w, forbidden_w in _cross_domain_pairs(d):
        yield _check(
            f"mtls:{client_w.name}->{server_w.name}",
            f"mutual TLS {client_w.spiffe_id} -> {server_w.spiffe_id}",
            lambda s=server_w, c=client_w: _mtls(svid_of(s), context_of(s), svid_of(c),
                                                 context_of(c), allowed=True),
        )  # fmt: skip
        if forbidden_w is not None:
            yield _check(
                f"mtls-refused:{forbidden_w.name}->{server_w.name}",
                f"{forbidden_w.name} is refused by {server_w.name}'s authorizer",
                lambda s=server_w, c=client_w, f=forbidden_w: _mtls(
                    svid_of(s), context_of(s), svid_of(f), context_of(f), allowed=False,
                    authorized=SpiffeId.parse(c.spiffe_id),
                ),
            )  # fmt: skip
        yield _check(
            f"jwt:{client_w.name}->{server_w.name}",
            f"a JWT-SVID of {client_w.name} validates at {server_w.name}",
            lambda s=server_w, c=client_w: _jwt(d, issuer=c, validator=s),
        )
    yield from _example_checks(d, svid_of, context_of)


def _example_checks(
    d: LocalDeployment,
    svid_of: Callable[[Workload], X509Svid],
    context_of: Callable[[Workload], X509Context],
) -> Iterator[CheckResult]:
    """The running example workloads answer real requests (when the checkout has them)."""
    examples = {p.workload.name: p for p in d.example_processes()}
    states = d.supervisor.states()
    for name, p in examples.items():
        yield _check(
            f"workload-process:{name}",
            f"{name} process running",
            lambda p=p: (
                f"pid {states[p.component.name].pid}"
                if p.component.name in states and states[p.component.name].running
                else _fail(f"not running; last exit: {states.get(p.component.name)}")
            ),
        )
    by_name = {w.name: w for w in d.local.workloads}
    api, caller = examples.get("enterprise-api"), by_name.get("data-processor")
    if api is not None and caller is not None:
        yield _check(
            "example:enterprise-api",
            f"enterprise-api serves its current SVID to {caller.name}",
            lambda: _api_health(api.port, svid_of(api.workload), svid_of(caller),
                                context_of(caller)),
        )  # fmt: skip
    gateway = examples.get("security-gateway")
    if gateway is not None and api is not None:
        gw_td = d.local.server(d.local.agent(gateway.workload.agent).server).trust_domain
        outsider = next(
            (w for w in d.local.workloads
             if d.local.server(d.local.agent(w.agent).server).trust_domain
             in gateway.workload.federates_with and gw_td in w.federates_with),
            None,
        )  # fmt: skip
        if outsider is not None:
            yield _check(
                f"example:{outsider.name}->security-gateway->enterprise-api",
                f"{outsider.name} reaches enterprise-api through the security gateway",
                lambda o=outsider: _through_gateway(
                    gateway.port, gateway.workload, svid_of(o), context_of(o)
                ),
            )


def _get_json(url: str, svid: X509Svid, ctx: X509Context, server_id: str) -> dict:
    context = mtls_client_context(
        _StaticSvid(svid), ctx.get_bundle_set(), authorize_id(SpiffeId.parse(server_id))
    )
    with mtls_urlopen(url, context, timeout=10) as resp:
        return json.loads(resp.read())


def _api_health(port: int | None, api_svid: X509Svid, svid: X509Svid, ctx: X509Context) -> str:
    body = _get_json(f"https://127.0.0.1:{port}/health", svid, ctx, str(api_svid.spiffe_id))
    if body.get("spiffe_id") != str(api_svid.spiffe_id):
        raise CheckFailed(f"/health says it is {body.get('spiffe_id')}")
    return f"/health: {body.get('spiffe_id')}, serial {body.get('serial')}"


def _through_gateway(port: int | None, gateway: Workload, svid: X509Svid, ctx: X509Context) -> str:
    body = _get_json(f"https://127.0.0.1:{port}/records", svid, ctx, gateway.spiffe_id)
    if body.get("caller") != gateway.spiffe_id:
        raise CheckFailed(f"enterprise-api saw caller {body.get('caller')}, not the gateway")
    return f"{len(body.get('records', []))} records; enterprise-api saw caller {body['caller']}"


def _check(check_id: str, title: str, fn: Callable[[], str]) -> CheckResult:
    start = time.monotonic()
    try:
        detail = fn()
        ok = True
    except CheckFailed as err:
        detail, ok = str(err), False
    except Exception as err:  # a check never crashes the report
        detail, ok = f"{type(err).__name__}: {err}", False
    return CheckResult(check_id, title, ok, detail, round(time.monotonic() - start, 3))


def _fail(message: str) -> str:
    raise CheckFailed(message)


def _server_live(s: Server) -> str:
    live = http_ok(s.host, s.ports.health, "/live")
    ready = http_ok(s.host, s.ports.health, "/ready")
    if not (live and ready):
        raise CheckFailed(
            f"health {s.host}:{s.ports.health}: live={'ok' if live else 'no'}, "
            f"ready={'ok' if ready else 'no'}"
        )
    return f"{s.host}:{s.ports.health} /live and /ready OK"


def _datastore(d: LocalDeployment, s: Server) -> str:
    # Counting entries is a datastore round trip inside SPIRE: it fails if the DB is gone.
    with d.server_client(s) as client:
        count = client.count_entries(timeout=5)
    kind = type(s.datastore).__name__.removesuffix("Datastore")
    return f"{kind}: {count} entries"


def _agent_attested(d: LocalDeployment, agent_name: str) -> str:
    agent = d.local.agent(agent_name)
    token = d.record.join_tokens.get(agent_name)
    if token is None:
        raise CheckFailed("never attested (no join token recorded)")
    td = d.local.server(agent.server).trust_domain
    agent_id = f"spiffe://{td}/spire/agent/join_token/{token}"
    with d.server_client(agent.server) as client:
        try:
            info = client.get_agent(agent_id, timeout=5)
        except NotFoundError:
            raise CheckFailed(f"{agent.server} does not know agent {agent_id}") from None
    if info.banned:
        raise CheckFailed(f"{agent_id} is banned")
    return agent_id


def _entries(d: LocalDeployment, s: Server) -> str:
    desired = d.desired_entries(s)
    with d.server_client(s) as client:
        current = list(client.list_entries(timeout=10))
    plan = plan_entries(current, desired, owner=entry_owner(d.local))
    if plan:
        raise CheckFailed("; ".join(c.describe() for c in plan.changes))
    return f"{len(plan.unchanged)} entries as expected"


def _x509_authorities(bundle: object) -> set[bytes]:
    from cryptography.hazmat.primitives.serialization import Encoding

    certs = getattr(bundle, "x509_authorities", ())
    return {
        (c.certificate if hasattr(c, "certificate") else c).public_bytes(Encoding.DER)
        for c in certs
    }


def _federated_bundle(d: LocalDeployment, server_name: str, trust_domain: str) -> str:
    remote = next(iter(d.local.servers_of(trust_domain)), None)
    if remote is None:
        raise CheckFailed(f"no server of {trust_domain} in this topology")
    with d.server_client(server_name) as client:
        try:
            held = client.get_federated_bundle(trust_domain, timeout=5)
        except NotFoundError:
            raise CheckFailed(f"{server_name} holds no bundle for {trust_domain}") from None
    with d.server_client(remote) as rc:
        remote_own = rc.get_bundle(timeout=5)
    trust = X509Bundle(
        TrustDomain(trust_domain), tuple(a.certificate for a in remote_own.x509_authorities)
    )
    served = _fetch_endpoint(d, remote, trust)
    if _x509_authorities(held) != _x509_authorities(served.x509_bundle()):
        raise CheckFailed(
            f"{server_name}'s copy of {trust_domain} differs from what {remote.name} serves "
            "on its bundle endpoint"
        )
    return f"{len(_x509_authorities(held))} X.509 authorities match the bundle endpoint"


def _fetch_endpoint(d: LocalDeployment, s: Server, trust: X509Bundle):  # -> SpiffeBundle
    url = f"https://{s.host}:{s.ports.federation}"
    profile = s.bundle_endpoint.profile if s.bundle_endpoint else HTTPS_SPIFFE
    return fetch_bundle(
        url,
        s.trust_domain,
        profile=profile,
        endpoint_id=f"spiffe://{s.trust_domain}/spire/server",
        bundle_source=trust,
        timeout=5,
    )


def _bundle_endpoint(d: LocalDeployment, s: Server) -> str:
    with d.server_client(s) as client:
        own = client.get_bundle(timeout=5)
    trust = X509Bundle(
        TrustDomain(s.trust_domain), tuple(a.certificate for a in own.x509_authorities)
    )
    served = _fetch_endpoint(d, s, trust)
    if _x509_authorities(served.x509_bundle()) != _x509_authorities(own):
        raise CheckFailed("the bundle endpoint serves a bundle that differs from the server's")
    return (
        f"https://{s.host}:{s.ports.federation} authenticated as "
        f"spiffe://{s.trust_domain}/spire/server; sequence {served.sequence_number}"
    )


def _workload_svid(
    d: LocalDeployment, w: Workload, svid: X509Svid, root: x509.Certificate | None
) -> str:
    server = d.local.server(d.local.agent(w.agent).server)
    expected_ttl = w.x509_svid_ttl or server.default_x509_svid_ttl
    leaf = svid.leaf
    ttl = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    # SPIRE backdates NotBefore a little; a TTL capped by the CA's lifetime is shorter
    if abs(ttl - expected_ttl) > TTL_TOLERANCE:
        raise CheckFailed(f"SVID TTL is {ttl}, expected {expected_ttl}")
    if root is None:
        return f"TTL {ttl}, expires {leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}"
    roots_only = BundleSet([X509Bundle(svid.spiffe_id.trust_domain, (root,))])
    verify_x509_svid(svid.cert_chain, roots_only)
    return f"TTL {ttl}, chains to {root.subject.rfc4514_string()}"


def _cross_domain_pairs(d: LocalDeployment) -> list[tuple[Workload, Workload, Workload | None]]:
    """(server, client, forbidden) workloads for each ordered pair of federated trust
    domains: one call each way, so both directions of the federation are proven."""
    t = d.local
    td_of = {w.name: t.server(t.agent(w.agent).server).trust_domain for w in t.workloads}
    pairs = []
    seen: set[tuple[str, str]] = set()
    for server_w in t.workloads:
        for client_w in t.workloads:
            a, b = td_of[server_w.name], td_of[client_w.name]
            if a == b or (a, b) in seen:
                continue
            if b not in server_w.federates_with or a not in client_w.federates_with:
                continue
            seen.add((a, b))
            forbidden = next(
                (w for w in t.workloads if w.name not in (server_w.name, client_w.name)
                 and w.agent != server_w.agent),
                None,
            )  # fmt: skip
            pairs.append((server_w, client_w, forbidden))
    return pairs


def _mtls(
    server_svid: X509Svid,
    server_ctx: X509Context,
    client_svid: X509Svid,
    client_ctx: X509Context,
    *,
    allowed: bool,
    authorized: SpiffeId | None = None,
) -> str:
    """A real handshake on loopback: the server admits exactly one client ID."""
    server_context = mtls_server_context(
        _StaticSvid(server_svid),
        server_ctx.get_bundle_set(),
        authorize_id(authorized or client_svid.spiffe_id),
    )
    client_context = mtls_client_context(
        _StaticSvid(client_svid), client_ctx.get_bundle_set(), authorize_id(server_svid.spiffe_id)
    )
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server_outcome: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(5)
        try:
            with server_context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
                server_outcome.append("accepted")
        except (OSError, ValueError) as err:
            server_outcome.append(f"refused: {err}")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        try:
            tls, peer = connect_mtls("127.0.0.1", port, client_context, timeout=5)
            with tls:
                data = tls.recv(2)
        except (OSError, ssl.SSLError) as err:
            data, peer = b"", None
            client_error = str(err)
        else:
            client_error = ""
        thread.join(5)
    finally:
        listener.close()
    outcome = server_outcome[0] if server_outcome else "no outcome"
    if allowed:
        if data != b"ok" or outcome != "accepted":
            raise CheckFailed(f"handshake failed: server {outcome}; client {client_error}")
        return f"handshake OK, server authenticated as {peer}"
    if outcome == "accepted" and data == b"ok":
        raise CheckFailed(f"{client_svid.spiffe_id} was accepted but must be refused")
    return f"refused as it must be ({outcome})"


def _jwt(d: LocalDeployment, *, issuer: Workload, validator: Workload) -> str:
    audience = validator.spiffe_id
    with WorkloadApiClient(f"unix://{d.paths.agent_socket(issuer.agent)}") as client:
        token = client.fetch_jwt_svid(audience, subject=issuer.spiffe_id, timeout=5)
    with WorkloadApiClient(f"unix://{d.paths.agent_socket(validator.agent)}") as client:
        bundles = client.fetch_jwt_bundles(timeout=5)
    validated = parse_and_validate_jwt_svid(token.token, bundles, [audience])
    try:
        parse_and_validate_jwt_svid(token.token, bundles, ["spiffe://elsewhere.test/x"])
    except ValueError:
        pass
    else:
        raise CheckFailed("a token for another audience was accepted")
    return f"{validated.spiffe_id} validated with audience {audience}; other audience refused"
