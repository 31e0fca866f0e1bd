"""Faults that must fire their alert in Alertmanager and resolve once undone, on any target.

Why it exists: issue 24 claims each alert fires within a bound after a real fault and
resolves when the fault is undone, on the local target and on the Kubernetes clusters. The
faults differ per target (an iptables rule on the host, one in a node's network namespace,
a frozen process), the waiting does not: :func:`fire_and_resolve` injects every fault at
once, undoes each as soon as its alert is firing, and waits until each resolved (one wait
for all keeps the test modules short). :class:`GatewayTraffic` is the traffic GatewayErrors
needs, built on :class:`~spire_fabric.runtime.deployment.Deployment` only.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spire_fabric.identity import SpiffeId
from spire_fabric.runtime.deployment import Deployment
from spire_fabric.runtime.monitoring import active_alerts, query_range
from spire_fabric.tls import authorize_id, mtls_client_context, mtls_urlopen

__all__ = ["Fault", "GatewayTraffic", "fire_and_resolve", "firing", "wait_for_good_fetch"]


def firing(alertmanager: str, name: str, component: str) -> bool:
    """Whether Alertmanager's API holds alert `name` for `component` as active."""
    return any(a.name == name and a.component == component for a in active_alerts(alertmanager))


def wait_for_good_fetch(prometheus: str, server: str, within: float = 90) -> None:
    """Until Prometheus saw `server` fetch a federated bundle successfully.

    FederatedBundleStale is about an endpoint that worked going stale. SPIRE starts
    fetching before `up` bootstraps the peer's bundle, so on a fresh deployment the first
    fetch may fail and the next comes a minute later (MinimumRefreshHint); after a good one,
    every 15 s (the preset's 1 min hint)."""
    good = (f'spire_server_bundle_manager_fetch_federated_bundle{{component="{server}", '
            'status="OK"}')  # fmt: skip
    deadline = time.monotonic() + within
    while not query_range(prometheus, good, time.time() - 10, time.time(), 5):
        assert time.monotonic() < deadline, f"{server} never fetched a federated bundle"
        time.sleep(1)


@dataclass(frozen=True)
class Fault:
    """A fault (a context manager factory: entered = injected, exited = undone) and the
    alert it must fire within `fire_within` seconds and resolve within `resolve_within`
    seconds of being undone."""

    alert: str
    component: str
    inject: Callable[[], contextlib.AbstractContextManager[Any]]
    fire_within: float
    resolve_within: float = 90


@dataclass(frozen=True)
class Timing:
    """Seconds from the fault to its alert firing, and from the undo to the alert gone."""

    fired: float
    resolved: float


def fire_and_resolve(alertmanager: str, faults: list[Fault]) -> dict[str, Timing]:
    """Injects every fault, undoes each as soon as its alert fires, and returns each alert's
    timing once all resolved; fails naming the alert that missed its bound. Nothing may be
    firing before (the alert would prove nothing), and every fault is undone on the way out
    whatever happens."""
    already = [f.alert for f in faults if firing(alertmanager, f.alert, f.component)]
    assert not already, f"firing before any fault: {already}"
    fired: dict[str, float] = {}
    resolved: dict[str, float] = {}
    with contextlib.ExitStack() as all_faults:
        undo = {}
        for f in faults:
            undo[f.alert] = all_faults.enter_context(contextlib.ExitStack())
            undo[f.alert].enter_context(f.inject())
        start = time.monotonic()
        while len(resolved) < len(faults):
            now = time.monotonic() - start
            for f in faults:
                if f.alert in resolved:
                    continue
                on = firing(alertmanager, f.alert, f.component)
                if f.alert not in fired:
                    assert now < f.fire_within, f"{f.alert} did not fire within {f.fire_within} s"
                    if on:
                        fired[f.alert] = now
                        undo[f.alert].close()
                elif not on:
                    resolved[f.alert] = now - fired[f.alert]
                else:
                    late = now - fired[f.alert] >= f.resolve_within
                    assert not late, f"{f.alert} did not resolve within {f.resolve_within} s"
            time.sleep(1)
    timings = {a: Timing(fired[a], resolved[a]) for a in fired}
    for alert, t in timings.items():
        print(f"{alert}: fired {t.fired:.1f} s after the fault, resolved {t.resolved:.1f} s "
              "after it was undone")  # fmt: skip
    return timings


class GatewayTraffic(threading.Thread):
    """upstream-client calling the gateway's /records over mTLS about 5 times a second (the
    gateway admits 50/s per SPIFFE caller), counting answers by status, until stopped."""

    def __init__(self, d: Deployment) -> None:
        super().__init__(daemon=True)
        t = d.topology
        client = d.x509_context("upstream-client")
        svid = next(s for s in client.svids
                    if str(s.spiffe_id) == t.workload("upstream-client").spiffe_id)  # fmt: skip
        gateway_id = SpiffeId.parse(t.workload("security-gateway").spiffe_id)
        self.context = mtls_client_context(svid, client.get_bundle_set(), authorize_id(gateway_id))
        address = d.workload_address("security-gateway")
        assert address is not None
        self.url = f"{address.url}/records"
        self.statuses: collections.Counter[int] = collections.Counter()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            try:
                with mtls_urlopen(self.url, self.context, timeout=10) as resp:
                    self.statuses[resp.status] += 1
            except urllib.error.HTTPError as e:
                self.statuses[e.code] += 1
            except OSError:
                self.statuses[0] += 1  # the gateway itself did not answer

    def __enter__(self) -> GatewayTraffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.join(15)
