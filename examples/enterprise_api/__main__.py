"""``python -m examples.enterprise_api``: the records API of downstream.example.org.

Serves HTTP/1.1 with keep-alive over mTLS. The server context reads the X509Source on
every handshake, so when the agent rotates the SVID new connections get the new
certificate with no restart, while open connections carry on. The handshake verifies each
peer against the bundle of its own trust domain; what a verified peer may do is decided by
one table (``policy.py``), filled by ``--grant``. Records and results live in a SQLite file
(``--db``; by default in the working directory, which the local target keeps per workload).
"""

from __future__ import annotations

import argparse
import logging
import sys

from spire_fabric.identity import SpiffeId
from spire_fabric.tls import authorize_any, authorize_id, mtls_client_context, serve_mtls_threaded
from spire_fabric.workload import JwtSource, WorkloadApiError

from .._common import (
    EXIT_NO_IDENTITY,
    add_identity_timeout_arg,
    add_log_file_args,
    add_max_connections_arg,
    add_metrics_listen_arg,
    add_number_arg,
    env,
    env_list,
    host_port,
    open_x509_source,
    setup_logging,
    stop_event,
)
from .._http import PlainHttpServer, kv
from .._metrics import serve_metrics
from .._pool import ConnectionPool
from .policy import ROLES, Grants
from .service import api_metrics, make_handler
from .store import Store

NAME = "enterprise-api"
log = logging.getLogger(NAME)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.enterprise_api", description=__doc__)
    p.add_argument(
        "--listen",
        type=host_port,
        default=env("ENTERPRISE_API_LISTEN", "127.0.0.1:8443"),
        help="HOST:PORT to serve on; port 0 picks one (env ENTERPRISE_API_LISTEN)",
    )
    p.add_argument(
        "--grant",
        action="append",
        metavar="ROLE=WHO",
        help=f"give a role ({', '.join(ROLES)}) to a SPIFFE ID or to every ID of a trust "
        "domain; repeatable (env ENTERPRISE_API_GRANT, comma-separated)",
    )
    p.add_argument(
        "--db",
        default=env("ENTERPRISE_API_DB", "enterprise-api.sqlite3"),
        help="SQLite file for records and results (env ENTERPRISE_API_DB; default "
        "%(default)s in the working directory)",
    )
    p.add_argument(
        "--jwt-audience",
        default=env("ENTERPRISE_API_JWT_AUDIENCE"),
        help="the audience a Bearer JWT-SVID must carry (env ENTERPRISE_API_JWT_AUDIENCE); "
        "without it routes that need a JWT-SVID refuse every caller",
    )
    p.add_argument(
        "--inventory",
        default=env("ENTERPRISE_API_INVENTORY"),
        metavar="URL",
        help="inventory's base URL, https://HOST:PORT, read for GET /inventory (env "
        "ENTERPRISE_API_INVENTORY)",
    )
    p.add_argument(
        "--inventory-id",
        default=env("ENTERPRISE_API_INVENTORY_ID"),
        metavar="SPIFFE_ID",
        help="the SPIFFE ID inventory (its sidecar) must present (env "
        "ENTERPRISE_API_INVENTORY_ID)",
    )
    add_number_arg(
        p,
        "--max-connection-age",
        "ENTERPRISE_API_MAX_CONNECTION_AGE",
        60.0,
        "seconds a keep-alive connection to inventory is reused before a new handshake",
    )
    add_identity_timeout_arg(p, "ENTERPRISE_API")
    add_max_connections_arg(p, "ENTERPRISE_API")
    add_metrics_listen_arg(p, "ENTERPRISE_API")
    add_log_file_args(p, "ENTERPRISE_API")
    p.add_argument(
        "--plain-http-peer",
        default=env("ENTERPRISE_API_PLAIN_HTTP_PEER"),
        metavar="SPIFFE_ID",
        help="BENCHMARK BASELINE ONLY: serve plain HTTP with no identity at all and treat "
        "every caller as this ID (env ENTERPRISE_API_PLAIN_HTTP_PEER)",
    )
    args = p.parse_args(argv)
    if bool(args.inventory) != bool(args.inventory_id):
        p.error("--inventory and --inventory-id go together: where, and whom to expect there")
    args.grant = args.grant or env_list("ENTERPRISE_API_GRANT")
    try:
        args.grants = Grants.parse(args.grant)
    except ValueError as e:
        p.error(str(e))
    if not args.grant:
        p.error("nobody could do anything: give --grant ROLE=SPIFFE_ID|TRUST_DOMAIN")
    return args


def serve_plain(args: argparse.Namespace, store: Store) -> int:
    """The benchmark's baseline: the same handler and store over plain HTTP."""
    peer = SpiffeId.parse(args.plain_http_peer)
    handler = make_handler(
        store, args.grants, source=None, jwt_bundles=None, audience=None, plain_peer=peer
    )
    server = PlainHttpServer(handler, args.listen, args.max_connections)
    stop = stop_event()
    log.warning(kv(event="listening", mode="PLAIN-HTTP-NO-IDENTITY", every_caller_is=peer))
    log.info("listening on %s", server.url)
    stop.wait()
    server.close()
    store.close()
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        setup_logging(NAME, args.log_file, args.log_max_bytes)
    except OSError as e:
        print(f"{NAME}: cannot write the log file: {e}", file=sys.stderr)
        return 1
    store = Store(args.db)
    log.info(kv(event="store", db=store.path, records=len(store.list_records())))
    if args.plain_http_peer:
        return serve_plain(args, store)
    source = open_x509_source(log, args.identity_timeout)
    if source is None:
        store.close()
        return EXIT_NO_IDENTITY
    stop = stop_event()
    jwt_bundles = None
    metrics = api_metrics()
    metrics.watch_svid(source)
    metrics_server = None
    try:
        if args.jwt_audience:
            jwt_bundles = JwtSource(first_update_timeout=args.identity_timeout)
        host, port = args.listen
        inventory = None
        if args.inventory:
            to_inventory = mtls_client_context(
                source, source, authorize_id(SpiffeId.parse(args.inventory_id)))
            inventory = ConnectionPool(args.inventory, to_inventory, size=4,
                                       max_age=args.max_connection_age)
        if args.metrics_listen:
            metrics_server = serve_metrics(metrics, args.metrics_listen)
        handler = make_handler(
            store, args.grants, source=source, jwt_bundles=jwt_bundles,
            audience=args.jwt_audience, metrics=metrics, inventory=inventory,
        )  # fmt: skip
        # authorize_any: the chain is still verified against the peer's own trust domain in
        # the handshake; what the peer may do is the table's decision, logged per request.
        server = serve_mtls_threaded(
            handler, source, source, authorize_any(), host=host, port=port,
            max_connections=args.max_connections,
        )  # fmt: skip
    except (WorkloadApiError, OSError) as e:
        log.error("cannot start: %s", e)
        if metrics_server is not None:
            metrics_server.close()
        if jwt_bundles is not None:
            jwt_bundles.close()
        source.close()
        store.close()
        return 1
    if metrics_server is not None:
        log.info(kv(event="metrics", url=f"{metrics_server.url}/metrics"))
    log.info(kv(event="policy", grants=args.grants.describe(), jwt_audience=args.jwt_audience))
    log.info("listening on %s", server.url)
    stop.wait()
    log.info("stopping")
    server.close()
    if metrics_server is not None:
        metrics_server.close()
    if jwt_bundles is not None:
        jwt_bundles.close()
    source.close()
    store.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
