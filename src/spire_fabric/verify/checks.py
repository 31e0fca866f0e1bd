"""Checks that prove a running deployment works, against SPIRE's own APIs and real handshakes.

Written once against the :class:`~spire_fabric.runtime.Deployment` interface, so the same
checks run on every target. Workloads are known only through their description in the
topology (``run.health``): nothing here names a particular program.

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
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import timedelta
from functools import cache, partial
from typing import Any, TypeVar, cast

from cryptography import x509

from spire_fabric.federation import HTTPS_SPIFFE, fetch_bundle
from spire_fabric.identity import (
    BundleSet,
    SpiffeBundle,
    SpiffeId,
    TrustDomain,
    X509Bundle,
    X509Svid,
    parse_and_validate_jwt_svid,
    spire_server_id,
    verify_x509_svid,
)
from spire_fabric.render import ALERT_NAMES
from spire_fabric.runtime.deployment import ComponentHealth, Deployment
from spire_fabric.runtime.monitoring import (
    active_alerts,
    federated_up,
    loaded_alert_rules,
    scrape_targets,
)
from spire_fabric.server import NotFoundError, SpireServerClient
from spire_fabric.tls import (
    authorize_id,
    connect_mtls,
    mtls_client_context,
    mtls_server_context,
    mtls_urlopen,
)
from spire_fabric.topology import (
    HealthProbe,
    Placeholder,
    Server,
    SpireUpstreamAuthority,
    Workload,
    effective_datastore,
    expand_placeholders,
)
from spire_fabric.verify._authorities import authorities_report, report_views
from spire_fabric.verify._authority_checks import authority_checks
from spire_fabric.verify._reads import IdentityReads
from spire_fabric.verify._replica_checks import Check, replica_checks
from spire_fabric.verify._report import CheckFailed, CheckResult, Report
from spire_fabric.verify._report import run_check as _check
from spire_fabric.verify._sidecar_checks import sidecar_checks
from spire_fabric.workload import X509Context

__all__ = ["verify_deployment"]

TTL_TOLERANCE = timedelta(seconds=60)
T = TypeVar("T")


def verify_deployment(deployment: Deployment) -> Report:
    """Run every check of ``deployment`` (written once against the `Deployment` interface,
    so the same checks prove every target) and return the report; a check that fails is
    red with its reason, never skipped.

    Every workload's identity is read once, all at the same time, before the checks
    start (:class:`IdentityReads`): the checks then judge what those reads returned. The
    checks themselves run at the same time too (:class:`_Pool`), the report keeping their
    order."""
    live = _LiveServersOnly(deployment)
    try:
        with IdentityReads(deployment) as reads, _Pool() as pool:
            reads.prefetch(_identity_views(deployment))
            checks = pool.results(_run_checks(live, reads, pool))
    finally:
        live.close()
    return Report(deployment.name, tuple(checks))


# Checks at the same time. Each waits on a server's API, a pod's exec or a port-forward
# (on Kubernetes a second or more each, 18 s one after the other for the enterprise
# topology), hardly on the CPU; bounded so a topology of hundreds of workloads does not
# open hundreds of connections at once.
CHECK_WORKERS = 8


class _Pool:
    """Runs checks in threads; :meth:`results` gives them back in the order asked for,
    whatever order they finished in."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=CHECK_WORKERS, thread_name_prefix="check")

    def call(self, fn: Callable[[], T]) -> Future[T]:
        """A read some checks share, started now; submitted before the checks that wait
        for it, it never waits for a free worker behind them."""
        return self._pool.submit(fn)

    def check(self, check_id: str, title: str, fn: Callable[[], str]) -> Future[list[CheckResult]]:
        """One check, started now."""
        return self._pool.submit(lambda: [_check(check_id, title, fn)])

    def group(self, checks: Callable[[], Iterable[CheckResult]]) -> Future[list[CheckResult]]:
        """Checks that run one after the other (a generator of them, or checks judged from
        one shared read), the group at the same time as the others."""
        return self._pool.submit(lambda: list(checks()))

    @staticmethod
    def results(futures: Iterable[Future[list[CheckResult]]]) -> list[CheckResult]:
        return [c for f in futures for c in f.result()]

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _identity_views(d: Deployment) -> dict[str, list[str]]:
    """By workload, the audiences of the JWT-SVIDs the checks and the authorities report
    ask it for (every workload's X.509 context and JWT bundles come with them)."""
    t = d.topology
    views: dict[str, list[str]] = {}
    for s in t.servers:
        for name, audiences in report_views(t, s).items():
            views.setdefault(name, []).extend(audiences)
    for server_w, client_w, _ in _cross_domain_pairs(d):
        views.setdefault(client_w.name, []).append(server_w.spiffe_id)
        views.setdefault(server_w.name, [])
    return views


class _LiveServersOnly:
    """The deployment, except that asking for the Server API of a server found not live
    fails at once, naming the check that found it, and that every check shares one client
    per server (and per replica).

    Why refuse: a call to a server that is gone retries until its timeout (5 s), and a
    dozen checks ask that server; a `verify` with one server down took 78 s, and repeated a
    dozen timeouts where one cause is the answer. Why share: a client is a channel with
    its own TLS handshake, on Kubernetes through a port-forward; a dozen checks each made
    one, and a check that asks one thing of a server took 2-4 s on the test clusters."""

    def __init__(self, d: Deployment) -> None:
        self._d = d
        self.down: set[str] = set()  # servers whose health endpoint does not answer "live"
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Future[SpireServerClient]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._d, name)

    def _refuse(self, server: str) -> None:
        if server in self.down:
            raise CheckFailed(f"{server} is not live (see server-live:{server})")

    def server(self, name: str) -> SpireServerClient:
        self._refuse(name)
        return self._shared((name, ""), lambda: self._d.server(name))

    def replica_server(self, name: str, replica: str) -> SpireServerClient:
        self._refuse(name)
        return self._shared((name, replica), lambda: self._d.replica_server(name, replica))

    def _shared(
        self, key: tuple[str, str], make: Callable[[], SpireServerClient]
    ) -> SpireServerClient:
        with self._lock:
            made = self._clients.get(key)
            mine = made is None
            if made is None:
                made = self._clients[key] = Future()
        if mine:
            try:
                made.set_result(make())
            except BaseException as err:
                with self._lock:  # not kept: the next check tries again
                    del self._clients[key]
                made.set_exception(err)
        return cast(SpireServerClient, _Unclosed(made.result()))

    def close(self) -> None:
        with self._lock:
            made, self._clients = list(self._clients.values()), {}
        for f in made:
            if f.done() and f.exception() is None:
                f.result().close()


class _Unclosed:
    """A shared client as a check sees it: ``with`` and ``close`` leave it open for the
    others (:meth:`_LiveServersOnly.close` closes it)."""

    def __init__(self, client: SpireServerClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def __enter__(self) -> _Unclosed:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def close(self) -> None:
        pass


def _run_checks(
    servers_live: _LiveServersOnly, reads: IdentityReads, pool: _Pool
) -> list[Future[list[CheckResult]]]:
    """Every check started in ``pool``, in report order. The servers' health is known
    before any other check starts: one found not live is not asked again (`down`)."""
    down = servers_live.down
    d = cast(Deployment, servers_live)
    t = d.topology
    # Whether each component runs, without SVID expiries: those are a Workload API call as
    # each workload (on Kubernetes an exec per pod), which the identity reads above make
    # once already. Only the checks of what runs wait for it, in the pool.
    status = pool.call(partial(d.status, svids=False))
    live = {s.name: pool.check(f"server-live:{s.name}", f"{s.name} live and ready",
                               partial(_server_live, d, s, down)) for s in t.servers}  # fmt: skip
    root = d.root_ca()
    for f in live.values():
        f.result()

    @cache  # once, when the status read is in: every workload's check looks up its row
    def rows() -> dict[tuple[str, str], ComponentHealth]:
        return {(r.kind, r.name): r for r in status.result()}

    def context_of(workload: Workload) -> X509Context:
        try:
            return reads.x509_context(workload.name)
        except Exception as err:
            raise CheckFailed(f"agent {workload.agent} gave no SVID: {err}") from None

    def svid_of(workload: Workload) -> X509Svid:
        for svid in context_of(workload).svids:
            if str(svid.spiffe_id) == workload.spiffe_id:
                return svid
        raise CheckFailed(f"agent {workload.agent} does not issue {workload.spiffe_id}")

    out: list[Future[list[CheckResult]]] = []
    check = pool.check

    out.append(pool.group(lambda: [
        _check(name, f"{name} running ({row.detail})", partial(_supervisor_running, row))
        for (kind, name), row in rows().items() if kind == "supervisor"]))  # fmt: skip
    for s in t.servers:
        out.append(live[s.name])
        out.append(check(f"datastore:{s.name}", f"{s.name} datastore reachable",
                         partial(_datastore, d, s)))  # fmt: skip
    for a in t.agents:
        out.append(check(f"agent-attested:{a.name}", f"{a.name} attested and not banned",
                         partial(_agent_attested, d, a.name)))  # fmt: skip
        out.append(check(f"agent-live:{a.name}", f"{a.name} live",
                         partial(_agent_live, d, a.name)))  # fmt: skip
    for s in t.servers:
        out.append(check(f"entries:{s.name}", f"{s.name} holds every expected entry, unchanged",
                         partial(_entries, d, s)))  # fmt: skip
    for fed in t.federations:
        out.append(check(
            f"federated-bundle:{fed.server}->{fed.trust_domain}",
            f"{fed.server} holds the current bundle of {fed.trust_domain}",
            partial(_federated_bundle, d, fed.server, fed.trust_domain),
        ))  # fmt: skip
    for s in t.servers:
        if s.bundle_endpoint is not None:
            out.append(check(
                f"bundle-endpoint:{s.name}",
                f"{s.name} serves its SPIFFE bundle ({s.bundle_endpoint.profile})",
                partial(_bundle_endpoint, d, s),
            ))  # fmt: skip
    nested = {s.name: s.upstream_authority.server for s in t.servers
              if isinstance(s.upstream_authority, SpireUpstreamAuthority)}  # fmt: skip
    for w in t.workloads:
        if w.name in nested:
            # A nested server's own identity: only the server process holds its SVID,
            # so prove what it got with it, a CA signed by its parent (Server API).
            out.append(check(
                f"workload-svid:{w.name}",
                f"{w.name} holds {w.spiffe_id} and got its CA with it",
                partial(_nested_ca, d, w.name, nested[w.name]),
            ))  # fmt: skip
            continue
        out.append(check(
            f"workload-svid:{w.name}",
            f"{w.name} holds {w.spiffe_id}",
            partial(lambda w: _workload_svid(d, w, svid_of(w), root), w),
        ))  # fmt: skip
    out += [check(*c) for c in _nested_checks(d, svid_of)]
    for server_w, client_w, forbidden_w in _cross_domain_pairs(d):
        out.append(check(
            f"mtls:{client_w.name}->{server_w.name}",
            f"mutual TLS {client_w.spiffe_id} -> {server_w.spiffe_id}",
            partial(_mtls_between, svid_of, context_of, server_w, client_w),
        ))  # fmt: skip
        if forbidden_w is not None:
            out.append(check(
                f"mtls-refused:{forbidden_w.name}->{server_w.name}",
                f"{forbidden_w.name} is refused by {server_w.name}'s authorizer",
                partial(
                    _mtls_between, svid_of, context_of, server_w, forbidden_w, allowed=client_w
                ),
            ))  # fmt: skip
        out.append(check(
            f"jwt:{client_w.name}->{server_w.name}",
            f"a JWT-SVID of {client_w.name} validates at {server_w.name}",
            partial(_jwt, reads, issuer=client_w, validator=server_w),
        ))  # fmt: skip
    out += [check(*c) for c in _workload_run_checks(d, rows, svid_of, context_of)]
    out.append(pool.group(lambda: sidecar_checks(d, svid_of, context_of)))
    # one authorities report judged by several checks
    out.append(pool.group(lambda: _authority_checks_of(d, reads)))
    out += [check(*c) for c in replica_checks(d)]
    # One Prometheus and Alertmanager asked by both checks, after the monitoring_urls read,
    # and after every other check is in. Why last: Prometheus finds a pod that has just
    # started at its next DNS refresh (one scrape interval), the other cluster's through one
    # more federation scrape. Asked at the start of the first pass of a fresh `up` on
    # Kubernetes, it did not yet see the newest workloads, and `up` paid a whole second pass
    # (12 s and the pause) for that alone; asked last, it has had the pass's time.
    # (The others were submitted first, so waiting on them in a worker cannot starve them.)
    others = list(out)
    out.append(pool.group(lambda: (wait(others), list(_monitoring_checks(d)))[1]))
    return out


def _monitoring_checks(d: Deployment) -> Iterator[CheckResult]:
    """With ``monitoring:``: Prometheus scrapes every component (each target up) and
    evaluates every alert rule, and Alertmanager holds no firing alert. A topology with
    monitoring on a target that does not run it yet gets one red row saying so."""
    if d.topology.monitoring is None:
        return
    try:
        urls = d.monitoring_urls()
    except Exception as err:  # Kubernetes: no running pod to forward to; a check never crashes
        yield CheckResult("monitoring", "Prometheus and Alertmanager run", False,
                          f"{type(err).__name__}: {err}")  # fmt: skip
        return
    if urls is None:
        yield CheckResult("monitoring", "Prometheus and Alertmanager run", False,
                          f"the {d.target} target does not run `monitoring:` yet")  # fmt: skip
        return
    prometheus, alertmanager = urls
    yield _check("monitoring-targets", "Prometheus scrapes every component, each target up",
                 partial(_targets_up, d, prometheus))  # fmt: skip
    yield _check("monitoring-alerts", "no alert firing in Alertmanager",
                 partial(_no_alert_firing, alertmanager))  # fmt: skip


def _targets_up(d: Deployment, prometheus: str) -> str:
    t = d.topology
    expected = {s.name for s in t.servers if s.ports.telemetry is not None}
    expected |= {a.name for a in t.agents if a.telemetry_port is not None}
    expected |= {w.name for w in t.workloads if w.run is not None and w.run.metrics_port}
    # ghostunnel's own metrics and the files-mode helper's, on each sidecar's status port
    expected |= {f"{w.name}/{s.name}" for w in t.workloads for s in w.sidecars
                 if s.status_port is not None}  # fmt: skip
    targets = scrape_targets(prometheus)
    # on Kubernetes the other clusters' components arrive through federation: their `up`
    federated = {c: v for c, v in federated_up(prometheus).items()
                 if c not in {x.component for x in targets}}  # fmt: skip
    missing = sorted(expected - {x.component for x in targets} - set(federated))
    down = [f"{x.component} ({x.health}: {x.last_error or 'not scraped yet'})"
            for x in targets if x.health != "up"]  # fmt: skip
    down += [f"{c} (federated: up={v:g})" for c, v in sorted(federated.items()) if v != 1]
    rules = set(loaded_alert_rules(prometheus))
    absent = [name for name in ALERT_NAMES if name not in rules and (
        name != "GatewayErrors" or (t.monitoring is not None and t.monitoring.edge_workload))]
    problems = []
    if missing:
        problems.append(f"not scraped: {', '.join(missing)}")
    if down:
        problems.append(f"down: {'; '.join(down)}")
    if absent:
        problems.append(f"alert rules not loaded: {', '.join(absent)}")
    if problems:
        raise CheckFailed("; ".join(problems))
    via = f" and {len(federated)} federated" if federated else ""
    return f"{len(targets)} targets{via} up, {len(rules)} alert rules ({prometheus})"


def _no_alert_firing(alertmanager: str) -> str:
    firing = active_alerts(alertmanager)
    if firing:
        raise CheckFailed("; ".join(f"{a.name} {a.component}: {a.summary}" for a in firing))
    return f"none ({alertmanager})"


def _authority_checks_of(d: Deployment, reads: IdentityReads) -> Iterator[CheckResult]:
    """The authority checks, judged from one authorities report (the same facts
    ``deploy authorities`` prints); the first check carries the time the report took."""
    start = time.monotonic()
    try:
        report = authorities_report(d, reads=reads)
    except Exception as err:  # a check never crashes the report
        yield CheckResult("authorities", "the authorities report could be gathered", False,
                          f"{type(err).__name__}: {err}")  # fmt: skip
        return
    seconds = round(time.monotonic() - start, 3)
    for i, result in enumerate(authority_checks(report, d.topology)):
        yield replace(result, seconds=seconds) if i == 0 else result


def _workload_run_checks(
    d: Deployment,
    rows: Callable[[], dict[tuple[str, str], ComponentHealth]],
    svid_of: Callable[[Workload], X509Svid],
    context_of: Callable[[Workload], X509Context],
) -> Iterator[Check]:
    """(id, title, body) of: each workload the topology says how to run is running, and
    answers its health probe as the identity it was given (a missing process is a red
    check, never absent)."""
    by_name = {w.name: w for w in d.topology.workloads}
    for w in d.topology.workloads:
        if w.run is None:
            continue
        yield (
            f"workload-process:{w.name}",
            f"{w.name} running",
            partial(lambda w: _workload_running(w, rows().get(("workload", w.name))), w),
        )
        probe = w.run.health
        if probe is None:
            continue
        caller = by_name[probe.caller] if probe.caller else w
        by = f" for {caller.name}" if caller is not w else ""
        yield (
            f"workload-health:{w.name}",
            f"{w.name} answers {probe.path}{by}",
            partial(
                lambda w, probe, caller: _probe(d, w, probe, svid_of(caller), context_of(caller)),
                w,
                probe,
                caller,
            ),
        )


def _workload_running(w: Workload, row: ComponentHealth | None) -> str:
    if row is None:
        raise CheckFailed("this target did not start it")
    if not row.running:
        raise CheckFailed(f"not running; last exit: {row.last_exit or 'none recorded'}")
    return f"pid {row.pid}" if row.pid else "running"


def _probe(d: Deployment, w: Workload, probe: HealthProbe, svid: X509Svid, ctx: X509Context) -> str:
    address = d.workload_address(w.name)
    if address is None:
        raise CheckFailed("it has no address on this target")
    url = f"{address.url}{probe.path}"
    if probe.scheme == "http":
        url = url.replace("https://", "http://", 1)
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read()
    else:
        context = mtls_client_context(
            svid, ctx.get_bundle_set(), authorize_id(SpiffeId.parse(w.spiffe_id))
        )
        with mtls_urlopen(url, context, timeout=10) as resp:
            body = resp.read()
    if not probe.expect:
        return f"{url}: 200"
    try:
        answer = json.loads(body)
    except ValueError:
        raise CheckFailed(f"{url} did not answer JSON: {body[:80]!r}") from None

    def value(p: Placeholder) -> str:
        target = d.topology.workload(p.workload) if p.workload else w
        if p.key == "spiffe_id":
            return target.spiffe_id
        other = d.workload_address(target.name)
        return (
            ""
            if other is None
            else {"port": str(other.port), "url": other.url}.get(
                p.key, f"{other.host}:{other.port}"
            )
        )

    seen = []
    for item in probe.expect:
        key, _, raw = item.partition("=")
        want = expand_placeholders(raw, value)
        got = answer.get(key) if isinstance(answer, dict) else None
        if str(got) != want:
            raise CheckFailed(f"{url}: {key} is {got!r}, expected {want!r}")
        seen.append(f"{key}={got}")
    return f"{url}: " + ", ".join(seen)


def _nested_checks(d: Deployment, svid_of: Callable[[Workload], X509Svid]) -> Iterator[Check]:
    """(id, title, body): a nested server's workloads chain through its CA to its parent's
    roots."""
    t = d.topology
    for s in t.servers:
        ua = s.upstream_authority
        if not isinstance(ua, SpireUpstreamAuthority):
            continue
        ours = [w for w in t.workloads if t.agent(w.agent).server == s.name]
        if not ours:
            continue
        w = ours[0]
        yield (
            f"nested-chain:{s.name}",
            f"{w.name} chains through {s.name}'s CA to {ua.server}'s root",
            partial(lambda w, parent: _nested_chain(d, svid_of(w), parent), w, ua.server),
        )


def _nested_ca(d: Deployment, server: str, parent: str) -> str:
    with d.server(server) as client:
        child = client.get_authority_state("x509", timeout=5).active
    with d.server(parent) as client:
        states = client.get_authority_state("x509", timeout=5)
    signers = {a.authority_id.lower() for a in (states.active, states.prepared, states.old) if a}
    if child is None:
        raise CheckFailed(f"{server} has no active X.509 CA")
    upstream = child.upstream_authority_subject_key_id.lower()
    if upstream not in signers:
        raise CheckFailed(
            f"{server}'s CA {child.authority_id} was signed by {upstream or 'nobody'}, "
            f"not by an authority of {parent} ({', '.join(sorted(signers))})"
        )
    return f"CA {child.authority_id[:16]}… signed by {parent}'s authority {upstream[:16]}…"


def _nested_chain(d: Deployment, svid: X509Svid, parent: str) -> str:
    with d.server(parent) as client:
        roots = tuple(a.certificate for a in client.get_bundle(timeout=5).x509_authorities)
    if len(svid.cert_chain) < 2:
        raise CheckFailed("the SVID carries no intermediate: it was not signed by a child CA")
    only_parent = BundleSet([X509Bundle(svid.spiffe_id.trust_domain, roots)])
    verify_x509_svid(svid.cert_chain, only_parent)
    child_ca = svid.cert_chain[1]
    return (
        f"leaf signed by {child_ca.subject.rfc4514_string() or 'the child CA'}, "
        f"{len(svid.cert_chain) - 1} intermediate(s), verified against {parent}'s roots only"
    )


def _fail(message: str) -> str:
    raise CheckFailed(message)


def _supervisor_running(row: ComponentHealth) -> str:
    return f"pid {row.pid}" if row.running else _fail("not running")


def _agent_live(d: Deployment, agent: str) -> str:
    return "healthy" if d.agent_healthy(agent) else _fail("agent is not healthy")


def _mtls_between(
    svid_of: Callable[[Workload], X509Svid],
    context_of: Callable[[Workload], X509Context],
    server: Workload,
    client: Workload,
    *,
    allowed: Workload | None = None,
) -> str:
    """mTLS from ``client`` to ``server``; with ``allowed``, the server's authorizer admits
    only ``allowed``, so ``client`` must be refused."""
    if allowed is None:
        return _mtls(
            svid_of(server), context_of(server), svid_of(client), context_of(client), allowed=True
        )
    return _mtls(
        svid_of(server),
        context_of(server),
        svid_of(client),
        context_of(client),
        allowed=False,
        authorized=SpiffeId.parse(allowed.spiffe_id),
    )


def _server_live(d: Deployment, s: Server, down: set[str]) -> str:
    live, ready = d.server_health(s.name)
    if not live:
        down.add(s.name)  # the checks after this one do not wait on its API
    if not (live and ready):
        raise CheckFailed(f"health: live={'ok' if live else 'no'}, ready={'ok' if ready else 'no'}")
    return "/live and /ready OK"


def _datastore(d: Deployment, s: Server) -> str:
    # Counting entries is a datastore round trip inside SPIRE: it fails if the DB is gone.
    with d.server(s.name) as client:
        count = client.count_entries(timeout=5)
    kind = type(effective_datastore(s, d.target)).__name__.removesuffix("Datastore")
    return f"{kind}: {count} entries"


def _agent_attested(d: Deployment, agent_name: str) -> str:
    agent = d.topology.agent(agent_name)
    agent_id = d.agent_id(agent_name)
    if agent_id is None:
        raise CheckFailed("never attested (no attestation recorded)")
    with d.server(agent.server) as client:
        try:
            info = client.get_agent(agent_id, timeout=5)
        except NotFoundError:
            raise CheckFailed(f"{agent.server} does not know agent {agent_id}") from None
    if info.banned:
        raise CheckFailed(f"{agent_id} is banned")
    return str(agent_id)


def _entries(d: Deployment, s: Server) -> str:
    plan = d.entry_plan(s.name)
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


def _federated_bundle(d: Deployment, server_name: str, trust_domain: TrustDomain) -> str:
    remote = next(iter(d.topology.servers_of(trust_domain)), None)
    if remote is None:
        raise CheckFailed(f"no server of {trust_domain} in this topology")
    with d.server(server_name) as client:
        try:
            held = client.get_federated_bundle(trust_domain, timeout=5)
        except NotFoundError:
            raise CheckFailed(f"{server_name} holds no bundle for {trust_domain}") from None
    with d.server(remote.name) as rc:
        remote_own = rc.get_bundle(timeout=5)
    trust = X509Bundle(
        remote.trust_domain, tuple(a.certificate for a in remote_own.x509_authorities)
    )
    served = _fetch_endpoint(d, remote, trust)
    if _x509_authorities(held) != _x509_authorities(served.x509_bundle()):
        raise CheckFailed(
            f"{server_name}'s copy of {trust_domain} differs from what {remote.name} serves "
            "on its bundle endpoint"
        )
    return f"{len(_x509_authorities(held))} X.509 authorities match the bundle endpoint"


def _fetch_endpoint(d: Deployment, s: Server, trust: X509Bundle) -> SpiffeBundle:
    url = d.bundle_endpoint_url(s.name)
    profile = s.bundle_endpoint.profile if s.bundle_endpoint else HTTPS_SPIFFE
    return fetch_bundle(
        url,
        s.trust_domain,
        profile=profile,
        endpoint_id=spire_server_id(s.trust_domain),
        bundle_source=trust,
        timeout=5,
    )


def _bundle_endpoint(d: Deployment, s: Server) -> str:
    with d.server(s.name) as client:
        own = client.get_bundle(timeout=5)
    trust = X509Bundle(
        s.trust_domain, tuple(a.certificate for a in own.x509_authorities)
    )
    served = _fetch_endpoint(d, s, trust)
    if _x509_authorities(served.x509_bundle()) != _x509_authorities(own):
        raise CheckFailed("the bundle endpoint serves a bundle that differs from the server's")
    return (
        f"{d.bundle_endpoint_url(s.name)} authenticated as "
        f"{spire_server_id(s.trust_domain)}; sequence {served.sequence_number}"
    )


def _workload_svid(
    d: Deployment, w: Workload, svid: X509Svid, root: x509.Certificate | None
) -> str:
    server = d.topology.server(d.topology.agent(w.agent).server)
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


def _cross_domain_pairs(d: Deployment) -> list[tuple[Workload, Workload, Workload | None]]:
    """(server, client, forbidden) workloads for each ordered pair of federated trust
    domains: one call each way, so both directions of the federation are proven."""
    t = d.topology
    td_of = {w.name: t.server(t.agent(w.agent).server).trust_domain for w in t.workloads}
    pairs = []
    seen: set[tuple[TrustDomain, TrustDomain]] = set()
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
        server_svid,
        server_ctx.get_bundle_set(),
        authorize_id(authorized or client_svid.spiffe_id),
    )
    client_context = mtls_client_context(
        client_svid, client_ctx.get_bundle_set(), authorize_id(server_svid.spiffe_id)
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


def _jwt(reads: IdentityReads, *, issuer: Workload, validator: Workload) -> str:
    audience = validator.spiffe_id
    token = reads.jwt_svid(issuer.name, audience)
    bundles = reads.jwt_bundles(validator.name)
    validated = parse_and_validate_jwt_svid(token.token, bundles, [audience])
    try:
        parse_and_validate_jwt_svid(token.token, bundles, ["spiffe://elsewhere.test/x"])
    except ValueError:
        pass
    else:
        raise CheckFailed("a token for another audience was accepted")
    return f"{validated.spiffe_id} validated with audience {audience}; other audience refused"
