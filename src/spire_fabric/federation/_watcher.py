"""Keep a federated trust domain's bundle fresh, as go-spiffe's ``federation.WatchBundle``.

The next fetch is scheduled from the bundle's ``spiffe_refresh_hint``, clamped to
[min_refresh, max_refresh] so a hostile or broken endpoint can neither make us poll in a
tight loop nor stop us refreshing. After a failure the watcher retries with exponential
backoff from ``min_refresh``, never waiting longer than the normal interval, and keeps
serving the last good bundle meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any

from spire_fabric.identity import (
    BundleSet,
    JwtBundle,
    SpiffeBundle,
    SpiffeId,
    TrustDomain,
    X509Bundle,
    X509BundleSource,
)

from ._fetch import HTTPS_SPIFFE, fetch_bundle

__all__ = ["BundleWatcher"]

logger = logging.getLogger("spire_fabric.federation")

DEFAULT_REFRESH = timedelta(minutes=5)


class BundleWatcher:
    """Fetches one trust domain's bundle in a background thread and serves the latest.

    It is an X.509 and JWT bundle source for that trust domain (and has
    ``get_bundle_set()``), so it plugs straight into the tls contexts and JWT validation.
    With profile https_spiffe and no ``bundle_source``, the endpoint is authenticated with
    the watcher's own latest bundle, seeded by ``initial_bundle``: SPIRE's model, where a
    trust domain's endpoint proves itself with that trust domain's keys.
    """

    def __init__(
        self,
        trust_domain: TrustDomain | str,
        url: str,
        *,
        profile: str = HTTPS_SPIFFE,
        endpoint_id: SpiffeId | str | None = None,
        initial_bundle: SpiffeBundle | X509Bundle | None = None,
        bundle_source: X509BundleSource | None = None,
        ca_file: str | None = None,
        min_refresh: timedelta = timedelta(seconds=30),
        max_refresh: timedelta = timedelta(hours=1),
        default_refresh: timedelta = DEFAULT_REFRESH,
        timeout: float = 10.0,
        on_update: Callable[[SpiffeBundle], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        fetch: Callable[..., SpiffeBundle] = fetch_bundle,
    ) -> None:
        if min_refresh <= timedelta(0) or max_refresh < min_refresh:
            raise ValueError(
                f"federation: need 0 < min_refresh <= max_refresh, got {min_refresh} and "
                f"{max_refresh}"
            )
        self.trust_domain = (
            trust_domain if isinstance(trust_domain, TrustDomain) else TrustDomain(trust_domain)
        )
        if isinstance(initial_bundle, X509Bundle):
            initial_bundle = SpiffeBundle.from_x509_bundle(initial_bundle)
        if initial_bundle is not None and initial_bundle.trust_domain != self.trust_domain:
            raise ValueError(
                f"federation: initial bundle is for {initial_bundle.trust_domain}, "
                f"not {self.trust_domain}"
            )
        self.url = url
        self.min_refresh = min_refresh
        self.max_refresh = max_refresh
        self.default_refresh = default_refresh
        self._fetch_kwargs: dict[str, Any] = {
            "profile": profile,
            "endpoint_id": endpoint_id,
            "bundle_source": bundle_source if bundle_source is not None else self,
            "ca_file": ca_file,
            "timeout": timeout,
        }
        self._fetch = fetch
        self._on_update = on_update
        self._on_error = on_error
        self._bundle = initial_bundle
        self._bundle_set: BundleSet[SpiffeBundle] = BundleSet(
            [initial_bundle] if initial_bundle is not None else []
        )
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0
        self.fetches = 0
        self.last_error: Exception | None = None

    # -- bundle source -------------------------------------------------------------
    @property
    def bundle(self) -> SpiffeBundle | None:
        """The last bundle fetched (or the initial one); None before the first success."""
        return self._bundle

    def get_x509_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> X509Bundle | None:
        """The watched bundle's X.509 half if it is ``trust_domain``'s, else None."""
        bundle = self._bundle
        return bundle.x509_bundle() if bundle and trust_domain == self.trust_domain else None

    def get_jwt_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> JwtBundle | None:
        """The watched bundle's JWT half if it is ``trust_domain``'s, else None."""
        bundle = self._bundle
        return bundle.jwt_bundle() if bundle and trust_domain == self.trust_domain else None

    def get_bundle_set(self) -> BundleSet[SpiffeBundle]:
        """An immutable-by-convention set holding the current bundle; replaced on update."""
        return self._bundle_set

    # -- scheduling ----------------------------------------------------------------
    def next_refresh(self, bundle: SpiffeBundle | None) -> timedelta:
        """When to fetch again after a success: the bundle's hint, clamped."""
        hint = bundle.refresh_hint if bundle is not None else None
        wanted = hint if hint else self.default_refresh
        return max(self.min_refresh, min(self.max_refresh, wanted))

    def retry_after(self, failures: int) -> timedelta:
        """Backoff after ``failures`` consecutive failures: doubling from min_refresh."""
        backoff: timedelta = self.min_refresh * (2 ** min(max(failures - 1, 0), 30))
        return min(backoff, self.next_refresh(self._bundle))

    def refresh(self) -> SpiffeBundle:
        """Fetch once now and, on success, publish the bundle. Raises FederationError."""
        bundle = self._fetch(self.url, self.trust_domain, **self._fetch_kwargs)
        with self._changed:
            changed = bundle != self._bundle
            self._bundle = bundle
            self._bundle_set = BundleSet([bundle])
            self.fetches += 1
            self._changed.notify_all()
        if changed and self._on_update is not None:
            self._on_update(bundle)
        return bundle

    def wait_for_fetches(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` successful fetches happened (for tests, startup)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.fetches >= count, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                bundle = self.refresh()
            except Exception as e:
                self.failures += 1
                self.last_error = e
                logger.warning("federation: refreshing %s failed: %s", self.trust_domain, e)
                if self._on_error is not None:
                    self._on_error(e)
                delay = self.retry_after(self.failures)
            else:
                self.failures = 0
                delay = self.next_refresh(bundle)
            self._stop.wait(delay.total_seconds())

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> BundleWatcher:
        """Start polling in a background thread; returns the watcher."""
        if self._thread is not None:
            raise RuntimeError("federation: BundleWatcher already started")
        self._thread = threading.Thread(
            target=self._run, name=f"bundle-watcher[{self.trust_domain}]", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling and wait (up to ``timeout`` s) for the thread to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> BundleWatcher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
