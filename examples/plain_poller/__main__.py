"""``python -m examples.plain_poller``: a job that calls a service over plain HTTP, in a loop.

It stands for the scripts and cron jobs (curl in a loop) that know nothing of SPIFFE: it
dials a plain port on 127.0.0.1, where a client-mode ghostunnel sidecar takes the request
to the real service over mutual TLS, presenting the job's SVID and accepting only the
service's SPIFFE ID. One line per request (status, milliseconds); counts at exit.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time
from urllib.parse import urlsplit

from .._common import env, stop_event


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.plain_poller", description=__doc__)
    p.add_argument("--url", default=env("PLAIN_POLLER_URL"), required=env("PLAIN_POLLER_URL")
                   is None, help="http://127.0.0.1:PORT/path to GET (env PLAIN_POLLER_URL)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between requests")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        print(f"plain-poller: expected http://HOST:PORT/path, got {args.url!r}", file=sys.stderr)
        return 2
    stop = stop_event()
    ok = failed = 0
    while not stop.is_set():
        started = time.monotonic()
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
        try:
            conn.request("GET", url.path or "/")
            status = conn.getresponse().status
        except (OSError, http.client.HTTPException) as e:
            status, why = 0, f" ({type(e).__name__}: {e})"
        else:
            why = ""
        finally:
            conn.close()
        ok, failed = (ok + 1, failed) if status == 200 else (ok, failed + 1)
        ms = (time.monotonic() - started) * 1000
        print(f"plain-poller GET {args.url} -> {status or 'failed'}{why} in {ms:.1f} ms "
              f"(ok {ok}, failed {failed})", flush=True)
        stop.wait(args.interval)
    print(f"plain-poller: stopped (ok {ok}, failed {failed})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
