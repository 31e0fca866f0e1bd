"""``python -m examples.security_gateway``: the edge of downstream.example.org.

One TLS listener for two kinds of callers. SPIFFE workloads of the allowed (federated)
trust domains present X.509-SVIDs, verified inside the handshake against *their own* trust
domain's bundle. External clients present no certificate (the listener asks for one but
does not require it); they check the gateway's certificate by its DNS name against the
Enterprise Root CA (``python -m spire_fabric.deploy trust-anchor``) and authenticate with
an API key (``issue-key`` below) or a JWT-SVID. The gateway then calls enterprise-api as
itself, over pooled keep-alive mTLS connections.

Subcommands manage the key file: ``issue-key --client NAME --route 'GET /records' ...
[--expires-in 30d]`` adds a client and prints its key once; ``list-keys`` shows the clients
(never a key or hash); ``revoke-key --client NAME`` removes one. A running gateway re-reads
the file when it changes.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from spire_fabric.errors import SpireFabricError
from spire_fabric.identity import SpiffeId, TrustDomain
from spire_fabric.tls import authorize_id, mtls_client_context, serve_mtls_threaded
from spire_fabric.workload import JwtSource, WorkloadApiError

from .._common import (
    EXIT_NO_IDENTITY,
    add_allow_args,
    add_identity_timeout_arg,
    add_log_file_args,
    add_max_connections_arg,
    add_metrics_listen_arg,
    add_number_arg,
    authorize_allowed,
    env,
    env_list,
    host_port,
    open_x509_source,
    resolve_allow_args,
    setup_logging,
    stop_event,
)
from .._http import ConnectionPool, PlainHttpServer, kv
from .._metrics import serve_metrics
from .clients import (
    ApiKeys,
    KeyFileError,
    RateLimiter,
    add_client,
    dump_key_file,
    list_clients,
    list_keys,
    parse_key_file,
    parse_route,
    revoke_client,
    update_key_file,
)
from .service import Policy, gateway_metrics, make_handler

NAME = "security-gateway"
log = logging.getLogger(NAME)

DEFAULT_KEYS_FILE = "api-keys.json"
DEFAULT_SPIFFE_ROUTES = ("GET /records", "GET /records/*", "GET /results")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.security_gateway", description=__doc__)
    upstream = env("SECURITY_GATEWAY_UPSTREAM")
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
        default=env("SECURITY_GATEWAY_UPSTREAM_ID"),
        help="the SPIFFE ID the upstream must present (env SECURITY_GATEWAY_UPSTREAM_ID)",
    )
    add_allow_args(p, "SECURITY_GATEWAY")
    p.add_argument(
        "--api-keys",
        default=env("SECURITY_GATEWAY_API_KEYS", DEFAULT_KEYS_FILE),
        help="the hashed API key file, re-read when it changes (env SECURITY_GATEWAY_API_KEYS;"
        " default %(default)s in the working directory)",
    )
    p.add_argument(
        "--spiffe-route",
        action="append",
        metavar="'METHOD /path'",
        help="a route SPIFFE callers (X.509- or JWT-SVID) may use; repeatable (env "
        "SECURITY_GATEWAY_SPIFFE_ROUTES, comma-separated; default: "
        + ", ".join(DEFAULT_SPIFFE_ROUTES)
        + ")",
    )
    add_number_arg(
        p,
        "--spiffe-rate",
        "SECURITY_GATEWAY_SPIFFE_RATE",
        50.0,
        "requests/s per SPIFFE caller",
    )
    p.add_argument(
        "--jwt-audience",
        default=env("SECURITY_GATEWAY_JWT_AUDIENCE"),
        help="audience of JWT-SVIDs accepted from external clients (env "
        "SECURITY_GATEWAY_JWT_AUDIENCE; default: the gateway's own SPIFFE ID)",
    )
    p.add_argument(
        "--jwt-trust-domain",
        action="append",
        metavar="TD",
        help="accept JWT-SVIDs of this trust domain; repeatable (env "
        "SECURITY_GATEWAY_JWT_TRUST_DOMAIN; default: ours and the --allow-trust-domain ones)",
    )
    add_number_arg(
        p,
        "--max-connection-age",
        "SECURITY_GATEWAY_MAX_CONNECTION_AGE",
        60.0,
        "seconds an upstream keep-alive connection is reused before a new handshake",
    )
    add_identity_timeout_arg(p, "SECURITY_GATEWAY")
    add_max_connections_arg(p, "SECURITY_GATEWAY")
    add_metrics_listen_arg(p, "SECURITY_GATEWAY")
    add_log_file_args(p, "SECURITY_GATEWAY")
    p.add_argument(
        "--plain-http",
        action="store_true",
        default=env("SECURITY_GATEWAY_PLAIN_HTTP") == "1",
        help="BENCHMARK BASELINE ONLY: plain HTTP on both sides, API keys only, no identity",
    )
    args = p.parse_args(argv)
    resolve_allow_args(p, args, "SECURITY_GATEWAY")
    try:
        args.spiffe_route = tuple(
            parse_route(r)
            for r in (args.spiffe_route or env_list_routes("SECURITY_GATEWAY_SPIFFE_ROUTES")
                      or DEFAULT_SPIFFE_ROUTES)
        )  # fmt: skip
        args.jwt_trust_domain = [
            TrustDomain.parse(t)
            for t in args.jwt_trust_domain or env_list("SECURITY_GATEWAY_JWT_TRUST_DOMAIN")
        ]
    except ValueError as e:
        p.error(str(e))
    scheme = urlsplit(args.upstream).scheme
    if scheme != ("http" if args.plain_http else "https"):
        p.error(f"--upstream must be an {'http' if args.plain_http else 'https'}:// URL, "
                f"got {args.upstream!r}")  # fmt: skip
    if not args.plain_http and not args.upstream_id:
        p.error("--upstream-id is required")
    return args


def env_list_routes(name: str) -> list[str]:
    """Routes contain a space, so only commas separate them."""
    return [r.strip() for r in (env(name) or "").split(",") if r.strip()]


DURATION = re.compile(r"([0-9]+)([smhd]?)")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``12h``, ``30d`` as seconds (argparse type)."""
    m = DURATION.fullmatch(text.strip())
    if m is None or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 3600, 15m, 12h or 30d, "
                                         f"got {text!r}")  # fmt: skip
    return int(m.group(1)) * UNITS[m.group(2)]


def add_key_file_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--api-keys",
        default=env("SECURITY_GATEWAY_API_KEYS", DEFAULT_KEYS_FILE),
        help="the gateway's key file (env SECURITY_GATEWAY_API_KEYS)",
    )
    d = p.add_argument_group(
        "a deployment's gateway instead of a file (local or Kubernetes: the key file is the "
        "workload's managed file api-keys.json; on Kubernetes a Secret the gateway reloads)"
    )
    d.add_argument("--deployment", metavar="TOPOLOGY", help="the deployment, by topology name")
    d.add_argument("--target", choices=("local", "kubernetes"), help="where it runs")
    d.add_argument("--state-dir", help="its state directory, if not the default one")
    d.add_argument("--workload", default=NAME, help="the gateway workload (%(default)s)")


KEYS_FILE_NAME = "api-keys.json"


class KeyStore:
    """The key file as a file, or as a deployment's managed file of the gateway workload
    (`Deployment.workload_file`), so `issue-key` works the same on both targets."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.deployment: Any = None
        if args.deployment is not None or args.state_dir is not None:
            from spire_fabric.deploy import attach

            self.deployment = attach(args.deployment or "enterprise", target=args.target,
                                     state_dir=args.state_dir)  # fmt: skip

    @property
    def where(self) -> str:
        if self.deployment is None:
            return str(self.args.api_keys)
        return f"{self.deployment.name} ({self.deployment.target}) {self.args.workload}"

    def update(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        if self.deployment is None:
            update_key_file(self.args.api_keys, change)
            return
        with self.deployment as d:
            raw = d.workload_file(self.args.workload, KEYS_FILE_NAME)
            document = parse_key_file(raw) if raw else {"clients": {}}
            text = dump_key_file(change(document))
            d.put_workload_file(self.args.workload, KEYS_FILE_NAME, text.encode())

    def clients(self) -> list[Any]:
        if self.deployment is None:
            return list_keys(self.args.api_keys)
        with self.deployment as d:
            raw = d.workload_file(self.args.workload, KEYS_FILE_NAME)
        return list_clients(parse_key_file(raw)) if raw else []


def issue_key_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m examples.security_gateway issue-key",
        description="Add (or replace) an external client and print its API key once; the "
        "file keeps only its hash. A running gateway picks it up without a restart.",
    )
    p.add_argument("--client", required=True, help="the client's name, as audit lines show it")
    p.add_argument(
        "--route",
        action="append",
        required=True,
        metavar="'METHOD /path'",
        help="a route the client may use, e.g. 'GET /records' or 'GET /records/*'; repeatable",
    )
    p.add_argument("--rate", type=float, default=5.0, help="requests/s (default %(default)s)")
    p.add_argument("--burst", type=int, default=10, help="burst size (default %(default)s)")
    p.add_argument(
        "--expires-in",
        type=duration,
        metavar="DURATION",
        help="the key stops working after this long (3600, 15m, 12h, 30d); default: never",
    )
    add_key_file_arg(p)
    args = p.parse_args(argv)
    issued: list[str] = []

    def add(document: dict[str, Any]) -> dict[str, Any]:
        new, key = add_client(document, args.client, args.route, args.rate, args.burst,
                              expires_in=args.expires_in)  # fmt: skip
        issued.append(key)
        return new

    try:
        store = KeyStore(args)
        store.update(add)
    except (ValueError, OSError, SpireFabricError) as e:
        p.error(str(e))
    key = issued[0]
    print(key)
    until = (
        time.strftime(" until %Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + args.expires_in))
        if args.expires_in
        else ""
    )
    print(f"issued for {args.client} in {store.where}{until}; it is shown only now",
          file=sys.stderr)  # fmt: skip
    return 0


def _when(stamp: int | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)) if stamp else "-"


def list_keys_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m examples.security_gateway list-keys",
        description="The clients in the key file: name, key id, routes, rate, issued and "
        "expiry times. Never a key or its hash.",
    )
    add_key_file_arg(p)
    p.add_argument("--output", choices=("table", "json"), default="table")
    args = p.parse_args(argv)
    try:
        store = KeyStore(args)
        clients = store.clients()
    except (KeyFileError, OSError, SpireFabricError) as e:
        p.error(str(e))
    now = time.time()
    if args.output == "json":
        rows = [
            {"client": c.name, "key_id": c.key_id, "routes": list(c.routes), "rate": c.rate,
             "burst": c.burst, "issued_at": c.issued_at, "expires_at": c.expires_at,
             "expired": c.expired(now)}
            for c in clients
        ]  # fmt: skip
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'CLIENT':<20} {'KEY ID':<12} {'EXPIRES':<20} {'RATE':>6}  ROUTES")
    for c in clients:
        expires = _when(c.expires_at) + (" (expired)" if c.expired(now) else "")
        print(f"{c.name:<20} {c.key_id:<12} {expires:<20} {c.rate:>6g}  {', '.join(c.routes)}")
    if not clients:
        print(f"(no clients in {store.where})", file=sys.stderr)
    return 0


def revoke_key_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m examples.security_gateway revoke-key",
        description="Remove a client from the key file; a running gateway refuses its key "
        "within a second or two (it re-reads the file when it changes).",
    )
    p.add_argument("--client", required=True, help="the client to remove")
    add_key_file_arg(p)
    args = p.parse_args(argv)
    try:
        store = KeyStore(args)
        store.update(lambda document: revoke_client(document, args.client))
    except (ValueError, OSError, SpireFabricError) as e:
        p.error(str(e))
    print(f"revoked {args.client} in {store.where}", file=sys.stderr)
    return 0


SUBCOMMANDS = {"issue-key": issue_key_main, "list-keys": list_keys_main,
               "revoke-key": revoke_key_main}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    args = parse_args(argv)
    try:
        setup_logging(NAME, args.log_file, args.log_max_bytes)
    except OSError as e:
        print(f"{NAME}: cannot write the log file: {e}", file=sys.stderr)
        return 1
    keys, limiter = ApiKeys(args.api_keys), RateLimiter()
    if args.plain_http:
        return serve_plain(args, keys, limiter)
    authorizer = authorize_allowed(args.allow, args.allow_trust_domain)
    source = open_x509_source(log, args.identity_timeout)
    if source is None:
        return EXIT_NO_IDENTITY
    stop = stop_event()
    me = source.get_x509_svid().spiffe_id
    try:
        jwt_bundles = JwtSource(first_update_timeout=args.identity_timeout)
    except WorkloadApiError as e:
        log.error("cannot start: %s", e)
        source.close()
        return 1
    policy = Policy(
        spiffe_routes=args.spiffe_route,
        spiffe_rate=args.spiffe_rate,
        spiffe_burst=max(1, int(args.spiffe_rate * 2)),
        jwt_audience=args.jwt_audience or str(me),
        jwt_trust_domains=frozenset(
            args.jwt_trust_domain
            or [me.trust_domain, *(TrustDomain.parse(t) for t in args.allow_trust_domain)]
        ),
    )
    # One client context and one pool, reused: new connections present the current SVID.
    to_upstream = mtls_client_context(
        source, source, authorize_id(SpiffeId.parse(args.upstream_id))
    )
    pool = ConnectionPool(args.upstream, to_upstream, size=64, max_age=args.max_connection_age)
    metrics = gateway_metrics(policy)
    metrics.watch_svid(source)
    host, port = args.listen
    try:
        metrics_server = (
            serve_metrics(metrics, args.metrics_listen) if args.metrics_listen else None
        )
        server = serve_mtls_threaded(
            make_handler(pool, keys, limiter, policy, jwt_bundles, metrics=metrics), source,
            source, authorizer, host=host, port=port, client_cert="optional",
            max_connections=args.max_connections,
        )  # fmt: skip
    except OSError as e:
        log.error("cannot start: %s", e)
        jwt_bundles.close()
        source.close()
        return 1
    if metrics_server is not None:
        log.info(kv(event="metrics", url=f"{metrics_server.url}/metrics"))
    log.info(
        kv(event="policy", allow=",".join(args.allow) or None,
           allow_trust_domains=",".join(args.allow_trust_domain) or None,
           spiffe_routes=",".join(policy.spiffe_routes), jwt_audience=policy.jwt_audience,
           jwt_trust_domains=",".join(sorted(map(str, policy.jwt_trust_domains))),
           api_keys=args.api_keys, upstream=args.upstream, upstream_id=args.upstream_id,
           max_connections=args.max_connections)
    )  # fmt: skip
    log.info("listening on %s", server.url)
    stop.wait()
    log.info("stopping")
    server.close()
    if metrics_server is not None:
        metrics_server.close()
    pool.close()
    jwt_bundles.close()
    source.close()
    log.info("stopped")
    return 0


def serve_plain(args: argparse.Namespace, keys: ApiKeys, limiter: RateLimiter) -> int:
    """The benchmark's baseline: the same handler over plain HTTP on both sides."""
    policy = Policy((), 0.0, 1, None, frozenset())
    pool = ConnectionPool(args.upstream, None, size=64)
    handler = make_handler(pool, keys, limiter, policy, None)
    server = PlainHttpServer(handler, args.listen, args.max_connections)
    stop = stop_event()
    log.warning(kv(event="listening", mode="PLAIN-HTTP-NO-IDENTITY", upstream=args.upstream))
    log.info("listening on %s", server.url)
    stop.wait()
    server.close()
    pool.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
