"""``python -m spire_fabric.dashboard [--deployment NAME] [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from spire_fabric._extras import require_extra_or_exit


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    require_extra_or_exit("dashboard", "python -m spire_fabric.dashboard")
    parser = argparse.ArgumentParser(
        prog="python -m spire_fabric.dashboard",
        description="A read-only web view of a running spire_fabric deployment.",
    )
    parser.add_argument("--deployment", default="enterprise", help="topology name (attach)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--refresh", type=float, default=5.0, help="seconds between refreshes")
    args = parser.parse_args(argv)
    import uvicorn

    from spire_fabric.dashboard import create_app
    from spire_fabric.deploy import attach

    deployment = attach(args.deployment)  # fails here, naming where it looked, if not up
    if not _is_loopback(args.host):
        print(
            f"dashboard: WARNING: serving on {args.host} without TLS or login; anyone who "
            "reaches it reads the deployment. Put an authenticating TLS proxy in front.",
            file=sys.stderr,
        )
    app = create_app(deployment, refresh=args.refresh)
    print(f"dashboard of {deployment.name}: http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
