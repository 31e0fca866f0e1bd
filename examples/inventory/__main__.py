"""``python -m examples.inventory``: nginx serving the inventory as JSON, with no SPIFFE code.

It stands for the programs a platform team runs and will not rewrite: its identity and
mutual TLS come from a ghostunnel sidecar in front of it (server mode: only the callers on
the sidecar's allow list get through), and nginx itself listens on 127.0.0.1 only.

This launcher writes nginx's configuration into ``--prefix`` (default: the working
directory, which each target gives the workload), runs nginx in the foreground as its
child and stays beside it: it passes on the signals it gets (HUP reloads nginx, which
keeps its master pid; TERM/INT/QUIT stop it) and exits with nginx's status. It does not
``exec`` nginx because nginx overwrites its own environment block with its process title,
and the local supervisor recognises its processes by that environment; nginx is also told
to die with the launcher (``PR_SET_PDEATHSIG``), so it is never left behind. Everything
nginx writes (``nginx.pid``, temp files; logs go to stderr) stays under the prefix: it
never touches the system's nginx service or /var/lib/nginx.

Answers: ``GET /items`` (the inventory), ``GET /health``; anything else is 404 JSON.

With ``--tls-dir`` nginx itself terminates mutual TLS with SVID files that a files-mode
sidecar (``python -m spire_fabric.helper``) keeps current there: ``svid.pem``,
``svid_key.pem``, and ``svid_bundle.pem`` as the CAs a client certificate must chain to
(any ID of the trust domain: nginx cannot match a SPIFFE ID). The helper sends SIGHUP to
the pid in ``--pid-file`` after each rotation, and nginx re-reads the files without a
restart (same master pid). The launcher waits for the files before it starts nginx, and
starts it again when nginx read them in the middle of a rotation (`_start_nginx`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .._common import env, host_port

NAME = "inventory"
ITEMS = [
    {"sku": "INV-1001", "name": "rack server", "region": "eu", "quantity": 12},
    {"sku": "INV-1002", "name": "top-of-rack switch", "region": "eu", "quantity": 4},
    {"sku": "INV-2001", "name": "hardware security module", "region": "us", "quantity": 2},
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.inventory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", type=host_port, default=env("INVENTORY_LISTEN", "127.0.0.1:8080"),
                   help="HOST:PORT nginx listens on (env INVENTORY_LISTEN)")
    p.add_argument("--prefix", type=Path, default=None,
                   help="nginx's prefix: config, pid and temp files (default: the working "
                   "directory)")
    p.add_argument("--nginx", default=env("INVENTORY_NGINX") or shutil.which("nginx")
                   or "/usr/sbin/nginx", help="the nginx binary (env INVENTORY_NGINX)")
    p.add_argument("--name", default=NAME, help="the service name in the answers")
    p.add_argument("--tls-dir", type=Path, default=None,
                   help="serve mutual TLS with svid.pem, svid_key.pem, svid_bundle.pem here")
    p.add_argument("--pid-file", type=Path, default=None,
                   help="where nginx writes its master pid (default: PREFIX/nginx.pid)")
    p.add_argument("--files-timeout", type=float, default=120.0,
                   help="seconds to wait for the --tls-dir files (default: %(default)s)")
    p.add_argument("--config-only", action="store_true",
                   help="write nginx.conf and exit (for inspection)")
    return p.parse_args(argv)


def _quoted(value: object) -> str:
    """JSON inside an nginx string: single-quoted, with nginx's own escaping."""
    return "'" + json.dumps(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def nginx_config(listen: tuple[str, int], prefix: Path, name: str = NAME,
                 tls_dir: Path | None = None, pid_file: Path | None = None) -> str:
    """The whole configuration: one server, JSON answers, every path under `prefix` (and
    the SVID files in `tls_dir`, when nginx terminates mutual TLS itself)."""
    host, port = listen
    tls = ""
    if tls_dir is not None:
        tls = f"""
        ssl_certificate {tls_dir}/svid.pem;
        ssl_certificate_key {tls_dir}/svid_key.pem;
        ssl_client_certificate {tls_dir}/svid_bundle.pem;
        ssl_verify_client on;
        ssl_verify_depth 5;
        ssl_protocols TLSv1.2 TLSv1.3;"""
    user = ""
    if os.geteuid() == 0:  # workers would otherwise drop to `nobody`, who cannot use prefix
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n"
    temp = "\n".join(f"    {kind}_temp_path {prefix}/tmp/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""# written by python -m examples.inventory; rewritten on every start
{user}worker_processes 1;
pid {pid_file or prefix / "nginx.pid"};
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
{temp}
    access_log off;
    server_tokens off;
    default_type application/json;
    keepalive_requests 10000;
    server {{
        listen {host}:{port}{" ssl" if tls_dir is not None else ""};{tls}
        location = /items  {{ return 200 {_quoted({"service": name, "items": ITEMS})}; }}
        location = /health {{ return 200 {_quoted({"service": name, "status": "ok"})}; }}
        location /         {{ return 404 {_quoted({"error": "not found"})}; }}
    }}
}}
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prefix = (args.prefix or Path.cwd()).resolve()
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / kind).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(args.listen, prefix, args.name, args.tls_dir, args.pid_file))
    if args.config_only:
        print(conf)
        return 0
    if not os.access(args.nginx, os.X_OK):
        print(f"inventory: no nginx at {args.nginx}; install Debian's nginx "
              "(scripts/install-nginx)", file=sys.stderr)
        return 2
    if args.tls_dir is not None and not _wait_for_files(args.tls_dir, args.files_timeout):
        print(f"inventory: no SVID files in {args.tls_dir} after {args.files_timeout:g} s; is "
              "the files-mode sidecar running?", file=sys.stderr)
        return 3
    argv_ = [args.nginx, "-p", f"{prefix}/", "-e", "stderr", "-c", str(conf),
             "-g", "daemon off;"]
    nginx = _start_nginx(argv_, args.tls_dir)
    if isinstance(nginx, int):
        return nginx

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            nginx.send_signal(signum)

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, forward)
    print(f"inventory: nginx pid {nginx.pid} on {args.listen[0]}:{args.listen[1]}", flush=True)
    return nginx.wait()


# nginx exits at once when the key does not match the certificate. That happens when it
# reads the files while the helper replaces them: the helper writes the key, then the chain
# (each atomically, but not the two together), and a reader between the two gets an old
# certificate with a new key. After a restart of both (`up` with new settings, CI
# 2026-12-07) the old files are there, so the launcher does not wait, and the helper writes
# the new SVID while nginx starts. A mismatched pair is in flux: it settles within the
# helper's next write, so nginx is started again, a bounded number of times.
NGINX_STARTS = 5
NGINX_EARLY_EXIT_S = 1.0


def _start_nginx(argv: list[str], tls_dir: Path | None) -> subprocess.Popen[bytes] | int:
    """nginx running, or its exit status when it could not start for another reason than
    a certificate and key caught in the middle of a rotation: the pair does not match now,
    or it was replaced while nginx read it (by the time nginx has exited, the helper has
    usually finished, and the pair then matches: CI 2026-12-07)."""
    for attempt in range(1, NGINX_STARTS + 1):
        before = _pair_files(tls_dir)
        nginx = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        try:
            rc = nginx.wait(timeout=NGINX_EARLY_EXIT_S)
        except subprocess.TimeoutExpired:
            return nginx
        if tls_dir is None or attempt == NGINX_STARTS or (
            _pair_files(tls_dir) == before and not _pair_mismatched(tls_dir)
        ):
            return rc
        print(f"inventory: nginx exited ({rc}) on a certificate and key of two different SVIDs "
              f"in {tls_dir} (the sidecar is replacing them); starting it again "
              f"({attempt + 1} of {NGINX_STARTS})", file=sys.stderr, flush=True)
        time.sleep(1.0)
    raise AssertionError("unreachable")


def _pair_files(tls_dir: Path | None) -> tuple[tuple[int, int], ...]:
    """Which files ``svid.pem`` and ``svid_key.pem`` are (inode and change time): the
    helper replaces a file by renaming a new one over it."""
    if tls_dir is None:
        return ()
    out = []
    for name in ("svid.pem", "svid_key.pem"):
        try:
            st = (tls_dir / name).stat()
            out.append((st.st_ino, st.st_ctime_ns))
        except OSError:
            out.append((0, 0))
    return tuple(out)


def _pair_mismatched(tls_dir: Path) -> bool:
    """``svid.pem`` and ``svid_key.pem`` are not one SVID (the SDK's own parse, which
    checks the key against the leaf as go-spiffe's ``x509svid.Parse`` does), or are being
    replaced (unreadable for a moment)."""
    from spire_fabric.identity import X509Svid, X509SvidError

    try:
        X509Svid.parse_pem((tls_dir / "svid.pem").read_bytes(),
                           (tls_dir / "svid_key.pem").read_bytes())  # fmt: skip
    except OSError:
        return True
    except X509SvidError as err:
        return "does not match private key" in str(err)
    return False


def _wait_for_files(tls_dir: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    names = ("svid.pem", "svid_key.pem", "svid_bundle.pem")
    while not all((tls_dir / n).is_file() for n in names):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the launcher dies (Linux prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


if __name__ == "__main__":
    sys.exit(main())
