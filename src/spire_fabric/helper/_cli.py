"""`python -m spire_fabric.helper`: the command line of files mode."""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from spire_fabric.errors import SpireFabricError

from ._config import (
    DEFAULT_BUNDLE,
    DEFAULT_KEY,
    DEFAULT_SVID,
    HelperConfig,
    HelperConfigError,
    JwtSvidFile,
    parse_mode,
    parse_signal,
)
from ._helper import FilesHelper

__all__ = ["main", "parse_args"]

DESCRIPTION = """\
Files mode: SPIFFE identity for a program that has no SPIFFE code, as files on disk (the
spiffe-helper contract). The helper asks the local SPIRE agent's Workload API for this
workload's identity and keeps these files current in --cert-dir:

  svid.pem          the X509-SVID's certificate chain, leaf first        (--cert-mode, 0644)
  svid_key.pem      its private key, PKCS#8 PEM                          (--key-mode,  0600)
  svid_bundle.pem   the trust bundle: CA certificates of the SVID's own
                    trust domain, plus every federated trust domain's with
                    --include-federated                                  (--cert-mode, 0644)
  <file>            a JWT-SVID (one line) per --jwt-svid AUDIENCE=FILE   (--jwt-mode,  0600)
  <file>            JWT bundles {trust domain: JWKS}, --jwt-bundle-file  (--cert-mode, 0644)

Every file is replaced atomically (written beside it with its mode, then renamed), and
only when its content changes; the key is written before the chain that it matches.
After a write that changes the X.509 files the helper tells the program: --signal SIG to
--pid or to the pid in --pid-file (read again each time; e.g. HUP makes nginx reload its
certificates with the same pid), and/or --command, run without a shell on every rotation.
JWT-SVIDs are fetched again when half their lifetime has passed.

--once writes the files once and exits (0: written; 1: not, with the reason). Without
it the helper runs as a daemon until SIGTERM/SIGINT, following rotations as the agent
pushes them; --health-listen HOST:PORT then serves GET /live and /ready (JSON: SPIFFE ID,
SVID expiry, rotations, last error) and /metrics (Prometheus: seconds until the SVID
expires, serial changes, file writes, reload signals sent).
"""

EPILOG = """\
examples:
  python -m spire_fabric.helper --once --cert-dir /run/svid
  python -m spire_fabric.helper --cert-dir /etc/nginx/svid --signal HUP \\
      --pid-file /run/nginx.pid --health-listen 127.0.0.1:8099
  python -m spire_fabric.helper --cert-dir /run/svid --jwt-svid api.example=api.jwt \\
      --command 'systemctl reload myapp'

The Workload API socket is --endpoint, else SPIFFE_ENDPOINT_SOCKET.
"""


def _jwt_svid(text: str) -> JwtSvidFile:
    audience, sep, file = text.rpartition("=")
    if not sep or not audience or not file:
        raise argparse.ArgumentTypeError(f"{text!r} is not AUDIENCE=FILE")
    return JwtSvidFile(audience, file)


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spire_fabric.helper", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--cert-dir", required=True, type=Path,
                   help="directory the files are written to (must exist)")
    p.add_argument("--endpoint", help="Workload API address, e.g. unix:///run/spire/agent.sock "
                   "(default: SPIFFE_ENDPOINT_SOCKET)")
    p.add_argument("--spiffe-id", help="the SVID to write when the agent issues several "
                   "(default: the first, the Workload API's default)")
    p.add_argument("--svid-file", default=DEFAULT_SVID, help="default: %(default)s")
    p.add_argument("--key-file", default=DEFAULT_KEY, help="default: %(default)s")
    p.add_argument("--bundle-file", default=DEFAULT_BUNDLE, help="default: %(default)s")
    p.add_argument("--include-federated", action="store_true",
                   help="append the federated trust domains' CAs to the bundle file")
    p.add_argument("--jwt-svid", action="append", default=[], type=_jwt_svid,
                   metavar="AUDIENCE=FILE", help="keep a JWT-SVID for AUDIENCE in FILE "
                   "(repeatable)")
    p.add_argument("--jwt-bundle-file", help="write the JWT bundles (JSON) to this file")
    p.add_argument("--cert-mode", default="0644", help="mode of certificate/bundle files "
                   "(default: %(default)s)")
    p.add_argument("--key-mode", default="0600", help="mode of the key (default: %(default)s)")
    p.add_argument("--jwt-mode", default="0600", help="mode of JWT-SVID files "
                   "(default: %(default)s)")
    p.add_argument("--signal", help="signal sent on every rotation, e.g. HUP")
    p.add_argument("--pid", type=int, help="process to signal")
    p.add_argument("--pid-file", type=Path, help="file holding the pid to signal")
    p.add_argument("--command", help="command run (no shell) on every rotation")
    p.add_argument("--once", action="store_true", help="write once and exit")
    p.add_argument("--health-listen", type=_listen, metavar="HOST:PORT",
                   help="daemon mode: serve /live, /ready and /metrics here")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the agent and a first identity (default: "
                   "%(default)s)")
    return p


def parse_args(argv: Sequence[str]) -> HelperConfig:
    """The config of `argv`, or HelperConfigError naming the bad option."""
    a = _parser().parse_args(list(argv))
    if not a.cert_dir.is_dir():
        raise HelperConfigError(f"--cert-dir: {a.cert_dir} is not a directory")
    if a.once and a.health_listen:
        raise HelperConfigError("--health-listen: only a daemon serves health; drop --once")
    try:
        command = tuple(shlex.split(a.command)) if a.command else ()
    except ValueError as exc:
        raise HelperConfigError(f"--command: {exc}") from None
    if a.spiffe_id is not None and not a.spiffe_id.startswith("spiffe://"):
        raise HelperConfigError(f"--spiffe-id: {a.spiffe_id!r} is not a SPIFFE ID")
    if a.command is not None and not command:
        raise HelperConfigError("--command: empty")
    return HelperConfig(
        cert_dir=a.cert_dir, endpoint=a.endpoint, spiffe_id=a.spiffe_id,
        svid_file=a.svid_file,
        key_file=a.key_file, bundle_file=a.bundle_file,
        include_federated=a.include_federated, jwt_svids=tuple(a.jwt_svid),
        jwt_bundle_file=a.jwt_bundle_file,
        cert_mode=parse_mode("--cert-mode", a.cert_mode),
        key_mode=parse_mode("--key-mode", a.key_mode),
        jwt_mode=parse_mode("--jwt-mode", a.jwt_mode),
        signal=parse_signal(a.signal) if a.signal else None, pid=a.pid,
        pid_file=a.pid_file, command=command, once=a.once,
        health_listen=a.health_listen, timeout=a.timeout,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        config = parse_args(sys.argv[1:] if argv is None else argv)
    except HelperConfigError as exc:
        print(f"helper: {exc}", file=sys.stderr)
        return 2

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        helper = FilesHelper(config, say)
    except SpireFabricError as exc:  # no Workload API address: bad input, said in one line
        print(f"helper: {exc}", file=sys.stderr)
        return 2
    try:
        if config.once:
            helper.run_once()
            return 0

        def stop(signum: int, frame: FrameType | None) -> None:
            helper.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        helper.run_daemon()
        return 0
    except SpireFabricError as exc:
        print(f"helper: {exc}", file=sys.stderr)
        return 1
    finally:
        helper.close()
