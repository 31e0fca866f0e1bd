"""What all three examples do the same way: flags with env fallbacks, logging, SIGTERM,
and getting an identity with an error message an operator can act on.

Kept deliberately small; the interesting code (serving, calling, authorizing) lives in each
example so it reads as plain use of ``spire_fabric.workload`` and ``spire_fabric.tls``.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import sys
import threading

from spire_fabric.identity import SpiffeId, TrustDomain
from spire_fabric.tls import Authorizer, authorize_predicate
from spire_fabric.workload import (
    NoIdentityIssuedError,
    WorkloadApiError,
    X509Source,
    pick_by_id,
    pick_first,
)

EXIT_NO_IDENTITY = 2


def env(name: str, default: str | None = None) -> str | None:
    """A flag's fallback: the installer may configure a process through its environment."""
    return os.environ.get(name) or default


def env_list(name: str) -> list[str]:
    """A repeatable flag's fallback: comma- or space-separated values."""
    return (os.environ.get(name) or "").replace(",", " ").split()


def add_number_arg(
    p: argparse.ArgumentParser, flag: str, env_name: str, default: float, help: str
) -> None:
    """A numeric flag whose default comes from ``env_name``; int if ``default`` is one."""
    kind = int if isinstance(default, int) else float
    p.add_argument(
        flag,
        type=kind,
        default=kind(env(env_name) or default),
        help=f"{help} (env {env_name}; default %(default)s)",
    )


def add_identity_timeout_arg(p: argparse.ArgumentParser, env_prefix: str) -> None:
    add_number_arg(
        p, "--identity-timeout", f"{env_prefix}_IDENTITY_TIMEOUT", 30.0,
        "seconds to wait for an SVID from the Workload API at startup",
    )  # fmt: skip


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def add_max_connections_arg(p: argparse.ArgumentParser, env_prefix: str) -> None:
    """``--max-connections``: a thread per connection, so this caps threads and memory."""
    name = f"{env_prefix}_MAX_CONNECTIONS"
    p.add_argument(
        "--max-connections",
        type=positive_int,
        default=env(name, "512"),
        help=f"connections served at once (a thread each); more are refused until one "
        f"closes (env {name}; default %(default)s)",
    )


def host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (port 0 lets the kernel pick; the chosen port is logged)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def add_metrics_listen_arg(p: argparse.ArgumentParser, env_prefix: str) -> None:
    """``--metrics-listen``: where to serve Prometheus' ``/metrics`` (plain HTTP, so loopback
    or a network only the scraper reaches); off unless given."""
    name = f"{env_prefix}_METRICS_LISTEN"
    p.add_argument(
        "--metrics-listen",
        type=host_port,
        default=env(name),
        help=f"HOST:PORT for a plain-HTTP Prometheus /metrics (env {name}); off by default",
    )


def add_log_file_args(p: argparse.ArgumentParser, env_prefix: str) -> None:
    """``--log-file`` / ``--log-max-bytes``: a size-capped, rotated log instead of stdout,
    for a service whose stdout nobody rotates (strangers' requests write audit lines)."""
    p.add_argument(
        "--log-file",
        default=env(f"{env_prefix}_LOG_FILE"),
        help=f"write the log here, rotated (env {env_prefix}_LOG_FILE; default: stdout)",
    )
    p.add_argument(
        "--log-max-bytes",
        type=positive_int,
        default=env(f"{env_prefix}_LOG_MAX_BYTES", str(LOG_MAX_BYTES)),
        help=f"rotate the --log-file at this size, keeping {LOG_BACKUPS} old files "
        f"(env {env_prefix}_LOG_MAX_BYTES; default %(default)s)",
    )


LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 2


def setup_logging(name: str, log_file: str | None = None, max_bytes: int = LOG_MAX_BYTES) -> None:
    """One line per event (spire_fabric's own loggers included, e.g. refused handshakes),
    so the log shows what happened and to whom: on stdout for a supervisor, or in
    ``log_file``, rotated at ``max_bytes`` with LOG_BACKUPS old files (the disk a flood of
    audit lines can take is then bounded: (1 + LOG_BACKUPS) x max_bytes)."""
    handler: logging.Handler
    if log_file:
        handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
    else:
        handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {name} %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def stop_event() -> threading.Event:
    """Set on SIGTERM or SIGINT, so main() can close its sources and servers and return.

    Installed once the identity is there: before that, the default action (exit) is right.
    """
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def open_x509_source(log: logging.Logger, timeout: float) -> X509Source | None:
    """The workload's X509Source, or None after logging why there is no identity.

    An agent answers "no identity issued" until a registration entry matches this process,
    which is normal for a few seconds after an installer creates the entry; the source keeps
    asking for ``timeout`` seconds before giving up.
    """
    # An agent issues every SVID whose selectors match this process; when several workloads
    # share an agent and a uid (as on the local target), SPIFFE_ID says which one is ours.
    wanted = os.environ.get("SPIFFE_ID")
    picker = pick_by_id(wanted) if wanted else pick_first
    try:
        source = X509Source(first_update_timeout=timeout, picker=picker)
    except NoIdentityIssuedError as e:
        log.error(
            "no identity: the SPIRE agent at %s has no registration entry for this process "
            "(uid %d, pid %d); create one parented to that agent (e.g. selector unix:uid:%d) "
            "and start again. Detail: %s",
            e.endpoint, os.getuid(), os.getpid(), os.getuid(), e,
        )  # fmt: skip
        return None
    except WorkloadApiError as e:
        log.error("no identity: cannot get an X509-SVID from the Workload API: %s", e)
        return None
    svid = source.get_x509_svid()
    log.info("identity %s (serial %x) from %s", svid.spiffe_id, svid.leaf.serial_number,
             source.endpoint)  # fmt: skip
    return source


def authorize_allowed(ids: list[str], trust_domains: list[str]) -> Authorizer:
    """Admit exactly the listed IDs plus every ID of the listed trust domains.

    Both lists are parsed up front so a typo fails at startup, not at the first request.
    """
    allowed_ids = frozenset(SpiffeId.parse(i) for i in ids)
    allowed_tds = frozenset(TrustDomain.parse(t) for t in trust_domains)
    shown = ", ".join(
        sorted(map(str, allowed_ids)) + [f"any ID of {t}" for t in sorted(map(str, allowed_tds))]
    )
    return authorize_predicate(
        lambda peer: peer in allowed_ids or peer.trust_domain in allowed_tds,
        f"the allowed callers ({shown or 'none'})",
    )


def add_allow_args(p: argparse.ArgumentParser, env_prefix: str) -> None:
    """`--allow` / `--allow-trust-domain`: who may call a serving example."""
    p.add_argument(
        "--allow",
        action="append",
        metavar="SPIFFE_ID",
        help=f"a caller ID to admit; repeatable (env {env_prefix}_ALLOW, comma-separated)",
    )
    p.add_argument(
        "--allow-trust-domain",
        action="append",
        metavar="TD",
        help=f"admit every ID of this trust domain; repeatable "
        f"(env {env_prefix}_ALLOW_TRUST_DOMAIN)",
    )


def resolve_allow_args(
    p: argparse.ArgumentParser, args: argparse.Namespace, env_prefix: str
) -> None:
    """Fill the allow lists from the environment and refuse an empty allow list."""
    args.allow = args.allow or env_list(f"{env_prefix}_ALLOW")
    args.allow_trust_domain = args.allow_trust_domain or env_list(
        f"{env_prefix}_ALLOW_TRUST_DOMAIN"
    )
    if not args.allow and not args.allow_trust_domain:
        p.error("nobody would be admitted: give --allow and/or --allow-trust-domain")
