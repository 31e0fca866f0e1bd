"""`FilesHelper`: keep the SVID files current, one-shot or as a daemon.

Built on the SDK's Workload API client (`spire_fabric.workload`): the X.509 context and
the JWT bundles are watched as streams (reconnecting with backoff, forever, when the agent
restarts), and each update is written at once. JWT-SVIDs are not streamed by the Workload
API, so each asked token is fetched again when half its lifetime has passed (as
spiffe-helper and go-spiffe's JWT source do), leaving the other half to absorb an agent
that is briefly away.

"Rotation" means the SVID or key files changed: a bundle-only update rewrites the bundle
file but does not count, and neither does a JWT refresh. Every write that changes a file
of the X.509 set notifies the program (signal or command), the first one included, so a
program started before the helper also picks up fresh files.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from spire_fabric._wait import wait_until
from spire_fabric.identity import BundleSet, JwtBundle, JwtSvid
from spire_fabric.workload import (
    NoIdentityIssuedError,
    Watcher,
    WorkloadApiClient,
    WorkloadApiError,
    WorkloadApiUnavailableError,
    X509Context,
)

from ._config import HelperConfig
from ._files import jwt_bundle_files, jwt_svid_files, write_files, x509_files
from ._health import HealthServer, HelperState
from ._notify import Notified, notify

__all__ = ["FilesHelper", "HelperError"]

logger = logging.getLogger("spire_fabric.helper")
_JWT_RETRY_S = 2.0


class HelperError(WorkloadApiError):
    """The helper could not get what it was asked to write in time."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class FilesHelper:
    """Writes the files of `config` from the Workload API; `say` gets one line per event."""

    def __init__(self, config: HelperConfig, say: Callable[[str], None] = print) -> None:
        self.config = config
        self.say = say
        self.state = HelperState(jwt_wanted=bool(config.jwt_svids))
        self._client = WorkloadApiClient(config.endpoint, timeout=min(config.timeout, 10.0),
                                         wait_for_socket=config.timeout)  # fmt: skip
        self._write_lock = threading.Lock()
        self._stop = threading.Event()

    # ----------------------------------------------------------------- one update each

    def on_x509(self, context: X509Context) -> None:
        """Write the X.509 files; notify the program if the SVID or key changed."""
        try:
            files = x509_files(self.config, context)
        except ValueError as exc:
            self.state.error(str(exc))
            self.say(f"helper: not written: {exc}")
            return
        with self._write_lock:
            written = write_files(self.config.cert_dir, files)
        svid = next(s for s in context.svids if self.config.spiffe_id in (None, str(s.spiffe_id)))
        expiry = svid.leaf.not_valid_after_utc
        rotated = bool({self.config.svid_file, self.config.key_file} & set(written.changed))
        notified = notify(self.config) if written and self._notifies() else Notified("")
        lifetime = (expiry - svid.leaf.not_valid_before_utc).total_seconds()
        self.state.x509_written(str(svid.spiffe_id), expiry, rotated, notified,
                                serial=svid.leaf.serial_number, lifetime_s=lifetime,
                                wrote=bool(written), signals=notified.signals)  # fmt: skip
        if written:
            what = "rotated" if rotated else "bundle updated"
            self.say(f"helper: {what}: {svid.spiffe_id}, SVID expires {expiry:%H:%M:%S}Z; "
                     f"wrote {', '.join(written.changed)}" + (f"; {notified}" if notified else ""))

    def _notifies(self) -> bool:
        return self.config.signal is not None or bool(self.config.command)

    def on_jwt_bundles(self, bundles: BundleSet[JwtBundle]) -> None:
        with self._write_lock:
            written = write_files(self.config.cert_dir, jwt_bundle_files(self.config, bundles))
        if written:
            self.say(f"helper: JWT bundles written ({len(bundles)} trust domain(s))")

    def refresh_jwt_svids(self) -> float:
        """Fetch and write every asked JWT-SVID; return seconds until the next refresh."""
        if not self.config.jwt_svids:
            return float("inf")
        svids: dict[str, JwtSvid] = {}
        for j in self.config.jwt_svids:
            svids[j.audience] = self._client.fetch_jwt_svid(j.audience,
                                                            subject=self.config.spiffe_id)
        with self._write_lock:
            written = write_files(self.config.cert_dir, jwt_svid_files(self.config, svids))
        earliest = min(s.expiry for s in svids.values())
        self.state.jwt_written(earliest)
        if written:
            self.say(f"helper: JWT-SVIDs written for {len(svids)} audience(s), the first "
                     f"expires {earliest:%H:%M:%S}Z")
        return max(1.0, (earliest - _now()).total_seconds() / 2)

    # ----------------------------------------------------------------- modes

    def _retrying(self, what: str, fetch: Callable[[], object]) -> object:
        """Fetch, waiting out "no identity yet" (an agent syncs entries every few seconds)."""
        result: list[object] = []

        def attempt() -> bool:
            try:
                result.append(fetch())
                return True
            except (NoIdentityIssuedError, WorkloadApiUnavailableError):
                return False

        wait_until(attempt, self.config.timeout, what, interval=0.5, retry_on=(),
                   error=HelperError)  # fmt: skip
        return result[0]

    def run_once(self) -> None:
        """Write every file once and notify if they changed; raise HelperError on failure."""
        context = self._retrying(f"an X509-SVID from {self._client.endpoint}",
                                 self._client.fetch_x509_context)  # fmt: skip
        assert isinstance(context, X509Context)
        self.on_x509(context)
        if self.config.jwt_bundle_file is not None:
            bundles = self._client.fetch_jwt_bundles()
            self.on_jwt_bundles(bundles)
        self.refresh_jwt_svids()
        if not self.state.ready():
            raise HelperError(f"files not written: {self.state.as_dict().get('error')}")

    def run_daemon(self) -> None:
        """Watch and write until `stop()`; a failing JWT fetch is retried, not fatal."""
        health = (HealthServer(self.config.health_listen, self.state)
                  if self.config.health_listen else None)  # fmt: skip
        if health is not None:
            self.say(f"helper: health on http://{health.address[0]}:{health.address[1]}"
                     "/live, /ready and /metrics")
        watchers: list[Watcher[Any]] = [
            self._client.watch_x509_context(self.on_x509, on_error=self._stream_error)]
        if self.config.jwt_bundle_file is not None:
            watchers.append(self._client.watch_jwt_bundles(self.on_jwt_bundles,
                                                           on_error=self._stream_error))
        try:
            next_jwt = time.monotonic()
            while not self._stop.is_set():
                if time.monotonic() >= next_jwt and self.state.ready_x509():
                    try:
                        next_jwt = time.monotonic() + self.refresh_jwt_svids()
                    except WorkloadApiError as exc:
                        self.state.error(str(exc))
                        self.say(f"helper: JWT-SVID fetch failed, retrying: {exc}")
                        next_jwt = time.monotonic() + _JWT_RETRY_S
                for w in watchers:
                    if w.error is not None:  # the agent called our request invalid: give up
                        self.state.error(str(w.error), fatal=True)
                        raise HelperError(f"the Workload API stream ended: {w.error}")
                self._stop.wait(min(1.0, max(0.05, next_jwt - time.monotonic())))
        finally:
            for w in watchers:
                w.close()
            if health is not None:
                health.close()

    def _stream_error(self, error: WorkloadApiError) -> None:
        self.state.error(str(error))

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.stop()
        self._client.close()
