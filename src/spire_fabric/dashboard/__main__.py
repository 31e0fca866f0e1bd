"""``python -m spire_fabric.dashboard [--deployment NAME] [--state-dir DIR] [--target T]
[--host H] [--port P] [--allow-host NAME]``."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys

from spire_fabric._extras import require_extra_or_exit
from spire_fabric.errors import SpireFabricError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _as_host_header(host: str) -> str:
    """How a browser writes ``host`` in the Host header: IPv6 literals in brackets."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host.lower()


def allowed_hosts(bind: str, extra: list[str]) -> list[str]:
    """The Host names the dashboard answers to when bound to ``bind``.

    Loopback: the loopback names (localhost, 127.0.0.1, [::1]). A specific address or name:
    that one. All interfaces (0.0.0.0, ::): this machine's host names. Plus ``extra``
    (``--allow-host``), e.g. the DNS name of a proxy in front. Anything else is refused
    with 400, which is what keeps a DNS-rebinding page out.
    """
    from spire_fabric.dashboard._app import LOOPBACK_HOSTS

    names: list[str] = [*LOOPBACK_HOSTS] if _is_loopback(bind) else []
    if bind in ("0.0.0.0", "::", ""):
        names += [*LOOPBACK_HOSTS, socket.gethostname().lower(), socket.getfqdn().lower()]
    else:
        names.append(_as_host_header(bind))
    names += [_as_host_header(h) for h in extra]
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> int:
    require_extra_or_exit("dashboard", "python -m spire_fabric.dashboard")
    parser = argparse.ArgumentParser(
        prog="python -m spire_fabric.dashboard",
        description="A read-only web view of a running spire_fabric deployment.",
    )
    parser.add_argument(
        "--deployment", default="enterprise", help="topology name of the deployment (attach)"
    )
    parser.add_argument(
        "--state-dir",
        default=None,
        help="the deployment's state directory, when `up` was given one "
        "(default: found by name under the state root)",
    )
    parser.add_argument(
        "--target",
        choices=("local", "kubernetes"),
        default=None,
        help="which deployment of that name (default: the local one if there is one)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this Host name (repeatable), e.g. a proxy's DNS name; "
        "other names get 400 (DNS-rebinding protection)",
    )
    parser.add_argument("--refresh", type=float, default=5.0, help="seconds between refreshes")
    args = parser.parse_args(argv)
    import uvicorn

    from spire_fabric.dashboard import create_app
    from spire_fabric.deploy import attach

    try:
        deployment = attach(args.deployment, state_dir=args.state_dir, target=args.target)
    except SpireFabricError as e:  # no such deployment: say where we looked, no traceback
        print(f"dashboard: {e}", file=sys.stderr)
        return 2
    if not _is_loopback(args.host):
        print(
            f"dashboard: WARNING: serving on {args.host} without TLS or login; anyone who "
            "reaches it reads the deployment. Put an authenticating TLS proxy in front.",
            file=sys.stderr,
        )
    hosts = allowed_hosts(args.host, args.allow_host)
    app = create_app(deployment, refresh=args.refresh, allowed_hosts=hosts)
    print(
        f"dashboard of {deployment.name}: http://{_as_host_header(args.host)}:{args.port}/ "
        f"(answers Host {', '.join(hosts)})",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
