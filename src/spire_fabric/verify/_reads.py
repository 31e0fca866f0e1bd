"""Each workload's identity read once per report, and all of them at the same time.

Why: a read of a workload's identity is a Workload API call made as that workload: on
Kubernetes an exec into its pod, or into a probe pod of its service account when it only
is registered, a second or several each. `verify`'s checks and the authorities report ask
for the same workloads' views (X.509 context, JWT bundles, JWT-SVIDs), one at a time. Here
the views a report will need are read up front with one :meth:`Deployment.workload_views`
per workload, in threads, so a report waits about as long as its slowest workload instead
of the sum of every view of every workload. A combined read that fails is not the answer:
each view is then read on its own, so a view that fails fails alone, as it did before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar, cast

from spire_fabric.identity import BundleSet, JwtBundle, JwtSvid
from spire_fabric.runtime.deployment import Deployment, WorkloadViews
from spire_fabric.workload import X509Context

__all__ = ["IdentityReads"]

T = TypeVar("T")
# Reads at the same time: each waits mostly on the cluster (an exec's round trips, a
# probe pod's start), so more than the cores; bounded so a topology of hundreds of
# workloads does not open hundreds of streams to one API server.
WORKERS = 8


class IdentityReads:
    """Memoised identity views of one deployment for one report. Use as a context
    manager (its threads end with it)."""

    def __init__(self, deployment: Deployment) -> None:
        self.d = deployment
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="identity-read")
        self._combined: dict[str, Future[WorkloadViews]] = {}
        # (True, value) or (False, the error) of each view read on its own
        self._single: dict[tuple[str, ...], tuple[bool, object]] = {}
        self._lock = threading.Lock()

    def prefetch(self, wanted: Mapping[str, Iterable[str]]) -> None:
        """Start one read per workload of ``wanted`` answering its X.509 context, its JWT
        bundles and a JWT-SVID for each audience given."""
        with self._lock:
            for name, audiences in wanted.items():
                if name not in self._combined:
                    auds = tuple(dict.fromkeys(audiences))
                    # the call inside the pool: whatever it raises is that view's finding
                    self._combined[name] = self._pool.submit(self._combined_read, name, auds)

    def _combined_read(self, workload: str, audiences: tuple[str, ...]) -> WorkloadViews:
        return self.d.workload_views(workload, audiences)

    def x509_context(self, workload: str) -> X509Context:
        views = self._views(workload)
        if views is not None:
            return views.x509
        return self._once(("x509", workload), lambda: self.d.x509_context(workload))

    def jwt_bundles(self, workload: str) -> BundleSet[JwtBundle]:
        views = self._views(workload)
        if views is not None:
            return views.jwt_bundles
        return self._once(("jwt-bundles", workload), lambda: self.d.jwt_bundles(workload))

    def jwt_svid(self, workload: str, audience: str) -> JwtSvid:
        views = self._views(workload)
        if views is not None and audience in views.jwt_svids:
            return views.jwt_svids[audience]
        return self._once(("jwt", workload, audience),
                          lambda: self.d.jwt_svid(workload, audience))  # fmt: skip

    def _views(self, workload: str) -> WorkloadViews | None:
        """The prefetched views (None: not asked for, or the combined read failed)."""
        with self._lock:
            future = self._combined.get(workload)
        if future is None or future.exception() is not None:
            return None
        return future.result()

    def _once(self, key: tuple[str, ...], read: Callable[[], T]) -> T:
        """``read()`` the first time, its value or its error every time after."""
        with self._lock:
            done = self._single.get(key)
        if done is None:
            try:
                done = (True, read())
            except Exception as err:
                done = (False, err)
            with self._lock:
                self._single[key] = done
        ok, value = done
        if not ok:
            assert isinstance(value, Exception)
            raise value
        return cast(T, value)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> IdentityReads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

