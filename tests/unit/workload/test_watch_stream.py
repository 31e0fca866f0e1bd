"""Stream reconnection and error reporting. The gRPC calls here are fakes, to inject faults
(a code, a broken message) that a real agent cannot produce on demand; the real-agent
behaviour is proven in tests/integration/workload."""

from __future__ import annotations

import grpc
import pytest
from fake_rpc_error import FakeRpcError

from spire_fabric.workload import (
    BackoffPolicy,
    NoIdentityIssuedError,
    WorkloadApiError,
    WorkloadApiResponseError,
    parse_endpoint,
)
from spire_fabric.workload._base import error_from_rpc
from spire_fabric.workload._watch import WatchStream

EP = parse_endpoint("unix:///tmp/sf/agent.sock")
FAST = BackoffPolicy(initial=0.001, maximum=0.002, jitter=0)


class FakeCall:
    def __init__(self, items: list[object]) -> None:
        self.items = items
        self.cancelled = False

    def __iter__(self):  # type: ignore[no-untyped-def]
        for item in self.items:
            if isinstance(item, Exception):
                raise item
            yield item

    def cancel(self) -> bool:
        self.cancelled = True
        return True


def _stream(calls: list[FakeCall], errors: list[WorkloadApiError]) -> WatchStream[object]:
    def convert(item: object) -> object:
        if item == "bad":
            raise WorkloadApiResponseError("unusable message")
        return item

    return WatchStream(
        lambda: calls.pop(0),
        convert,
        lambda err: error_from_rpc(err, EP, "FetchX509SVID"),
        what="FetchX509SVID",
        endpoint=EP.address,
        backoff=FAST,
        on_error=errors.append,
    )


def test_stream_reconnects_after_errors_and_reports_each_one() -> None:
    unavailable = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused")
    calls = [FakeCall([1, unavailable]), FakeCall(["bad", 2]), FakeCall([3])]
    errors: list[WorkloadApiError] = []
    stream = _stream(calls, errors)
    assert [next(stream), next(stream), next(stream)] == [1, 2, 3]
    assert [type(e).__name__ for e in errors] == [
        "WorkloadApiUnavailableError",
        "WorkloadApiResponseError",
        "WorkloadApiUnavailableError",  # the second call ended after "2"
    ]
    assert "/tmp/sf/agent.sock" in str(errors[0])


def test_invalid_argument_ends_the_stream_loudly() -> None:
    bad = FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "security header missing")
    errors: list[WorkloadApiError] = []
    stream = _stream([FakeCall([bad])], errors)
    with pytest.raises(WorkloadApiError, match="security header missing"):
        next(stream)
    assert len(errors) == 1


def test_stream_that_ends_is_reported_and_reopened() -> None:
    calls = [FakeCall([1]), FakeCall([2])]
    errors: list[WorkloadApiError] = []
    stream = _stream(calls, errors)
    assert [next(stream), next(stream)] == [1, 2]
    assert "ended the stream" in str(errors[0])


def test_permission_denied_no_identity_maps_to_its_own_error_naming_the_socket() -> None:
    err = error_from_rpc(
        FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "no identity issued"),
        EP,
        "FetchX509SVID",
    )
    assert isinstance(err, NoIdentityIssuedError)
    assert "/tmp/sf/agent.sock" in str(err)
    assert err.code == grpc.StatusCode.PERMISSION_DENIED


def test_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = BackoffPolicy(initial=0.1, maximum=0.4, jitter=0).start()
    assert [backoff.next() for _ in range(4)] == [0.1, 0.2, 0.4, 0.4]
    backoff.reset()
    assert backoff.next() == 0.1
    with pytest.raises(ValueError, match="initial"):
        BackoffPolicy(initial=0)
