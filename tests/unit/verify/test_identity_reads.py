"""IdentityReads: one combined read per workload for a whole report, each view's failure
its own when the combined read fails."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from spire_fabric.runtime.deployment import WorkloadViews
from spire_fabric.verify._reads import IdentityReads


class Reads:
    """A deployment's identity reads, counted; ``broken`` views fail."""

    def __init__(self, broken: frozenset[str] = frozenset()) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.broken = broken
        self._lock = threading.Lock()

    def _call(self, *call: str) -> None:
        with self._lock:
            self.calls.append(call)
        if call[0] in self.broken or (call[0] == "views" and self.broken):
            raise RuntimeError(f"{call[0]} of {call[1]} failed")

    def workload_views(self, workload: str, audiences: tuple[str, ...] = ()) -> WorkloadViews:
        self._call("views", workload, *audiences)
        return WorkloadViews(f"x509 {workload}", f"bundles {workload}",  # type: ignore[arg-type]
                             {a: f"jwt {workload} {a}" for a in audiences})  # fmt: skip

    def x509_context(self, workload: str) -> Any:
        self._call("x509", workload)
        return f"x509 {workload} alone"

    def jwt_bundles(self, workload: str) -> Any:
        self._call("jwt_bundles", workload)
        return f"bundles {workload} alone"

    def jwt_svid(self, workload: str, audience: str) -> Any:
        self._call("jwt", workload, audience)
        return f"jwt {workload} {audience} alone"


def test_every_view_of_a_prefetched_workload_comes_from_its_one_read() -> None:
    d = Reads()
    with IdentityReads(d) as reads:  # type: ignore[arg-type]
        reads.prefetch({"api": ["aud-a", "aud-b", "aud-a"], "client": []})
        assert reads.x509_context("api") == "x509 api"
        assert reads.jwt_bundles("api") == "bundles api"
        assert reads.jwt_svid("api", "aud-b") == "jwt api aud-b"
        assert reads.x509_context("client") == "x509 client"
        reads.prefetch({"api": ["aud-c"]})  # already read: not read again
    assert sorted(d.calls) == [("views", "api", "aud-a", "aud-b"), ("views", "client")]


def test_a_view_not_prefetched_is_read_alone_once() -> None:
    d = Reads()
    with IdentityReads(d) as reads:  # type: ignore[arg-type]
        reads.prefetch({"api": ["aud-a"]})
        assert reads.jwt_svid("api", "other") == "jwt api other alone"
        assert reads.jwt_svid("api", "other") == "jwt api other alone"
        assert reads.x509_context("unplanned") == "x509 unplanned alone"
    assert sorted(d.calls) == [("jwt", "api", "other"), ("views", "api", "aud-a"),
                               ("x509", "unplanned")]  # fmt: skip


def test_a_failed_combined_read_leaves_each_view_to_fail_or_answer_on_its_own() -> None:
    d = Reads(broken=frozenset({"jwt"}))
    with IdentityReads(d) as reads:  # type: ignore[arg-type]
        reads.prefetch({"api": ["aud-a"]})
        assert reads.x509_context("api") == "x509 api alone"
        for _ in range(2):  # the failure is remembered, not read again
            with pytest.raises(RuntimeError, match="jwt of api failed"):
                reads.jwt_svid("api", "aud-a")
    assert sorted(d.calls) == [("jwt", "api", "aud-a"), ("views", "api", "aud-a"),
                               ("x509", "api")]  # fmt: skip
