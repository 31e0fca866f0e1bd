"""Our in-process port-forward (runtime.kubernetes._pods.PortForward) without a cluster: the
client's ``portforward`` is replaced by a stand-in whose stream is a socket pair served by
an echo thread, so what is tested is our listener, retries and lifecycle."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from spire_fabric.runtime.kubernetes import _pods
from spire_fabric.runtime.kubernetes._clusters import ClusterApi


class _Stream:
    """What the client's portforward returns: ``socket(port)`` and ``close()``; the pod
    side echoes every byte back."""

    def __init__(self) -> None:
        self._ours, pod = socket.socketpair()
        threading.Thread(target=self._echo, args=(pod,), daemon=True).start()

    @staticmethod
    def _echo(pod: socket.socket) -> None:
        with pod:
            while data := pod.recv(4096):
                pod.sendall(data)

    def socket(self, port: int) -> socket.socket:
        return self._ours

    def close(self) -> None:
        self._ours.close()


class _FailingFirst:
    """Fails the first ``failures`` stream opens (as an upgrade the API server or kubelet
    refused), then opens echo streams."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def __call__(self, method: Any, *args: Any, **kwargs: Any) -> _Stream:
        self.calls += 1
        if self.calls <= self.failures:
            raise k8s.ApiException(status=0, reason=f"Handshake status 500 (try {self.calls})")
        return _Stream()


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> ClusterApi:
    monkeypatch.setattr(_pods.PortForward, "RETRY_PAUSE", 0.01)
    return ClusterApi("c", "ctx", k8s.ApiClient(k8s.Configuration()))


def _round_trip(pf: _pods.PortForward, data: bytes = b"hello") -> bytes:
    with socket.create_connection(("127.0.0.1", pf.local_port), timeout=5) as s:
        s.sendall(data)  # sent before the stream is open, as a TLS client hello is
        return s.recv(100)


def test_a_stream_that_fails_to_open_is_tried_again_and_the_connection_goes_through(
    conn: ClusterApi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    opener = _FailingFirst(_pods.PortForward.OPEN_ATTEMPTS - 1)
    monkeypatch.setattr(_pods, "portforward", opener)
    with _pods.PortForward(conn, "ns", "pod-1", 8443) as pf:
        assert _round_trip(pf) == b"hello"
    assert opener.calls == _pods.PortForward.OPEN_ATTEMPTS
    assert len(pf.failures) == _pods.PortForward.OPEN_ATTEMPTS - 1
    assert "ns/pod-1:8443" in pf.failures[0] and "Handshake status 500 (try 1)" in pf.failures[0]
    assert "opening stream 1 of 3 failed" in caplog.text


def test_a_stream_that_never_opens_closes_the_connection_and_says_why_each_time(
    conn: ClusterApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    opener = _FailingFirst(10)
    monkeypatch.setattr(_pods, "portforward", opener)
    # closed with the client's bytes unread: the client sees a reset, as a run did
    with _pods.PortForward(conn, "ns", "pod-1", 8443) as pf, pytest.raises(ConnectionResetError):
        _round_trip(pf)
    assert opener.calls == _pods.PortForward.OPEN_ATTEMPTS
    assert [f.split(": opening ")[1][:20] for f in pf.failures] == [
        f"stream {i} of 3 failed" for i in (1, 2, 3)
    ]


def test_a_retired_forward_takes_no_new_connections_but_finishes_those_in_flight(
    conn: ClusterApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `forward` does when the pod was replaced: a request already on its way to the
    old pod is not cut in the middle."""
    monkeypatch.setattr(_pods, "portforward", _FailingFirst(0))
    pf = _pods.PortForward(conn, "ns", "pod-1", 8443)
    try:
        with socket.create_connection(("127.0.0.1", pf.local_port), timeout=5) as s:
            s.sendall(b"a")
            assert s.recv(10) == b"a"
            pf.retire()
            time.sleep(1.5)  # longer than the carrying loop's poll: it would have cut it
            s.sendall(b"b")
            assert s.recv(10) == b"b"
            assert pf.carrying == 1
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", pf.local_port), timeout=5)
        deadline = time.monotonic() + 5
        while pf.carrying and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pf.carrying == 0
    finally:
        pf.close()


def test_closing_a_forward_cuts_the_connections_in_flight(
    conn: ClusterApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_pods, "portforward", _FailingFirst(0))
    pf = _pods.PortForward(conn, "ns", "pod-1", 8443)
    with socket.create_connection(("127.0.0.1", pf.local_port), timeout=5) as s:
        s.sendall(b"a")
        assert s.recv(10) == b"a"
        pf.close()
        s.settimeout(5)
        assert s.recv(10) == b""


class _HangingFirst:
    """The first open hangs until released (an upgrade the kubelet never answers), and its
    stream arrives only then; later opens are echo streams at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.late: _Stream | None = None

    def __call__(self, method: Any, *args: Any, **kwargs: Any) -> _Stream:
        self.calls += 1
        if self.calls == 1:
            self.release.wait(10)
            self.late = _Stream()
            return self.late
        return _Stream()


def test_a_stream_that_hangs_opening_is_given_up_and_a_new_one_carries_the_connection(
    conn: ClusterApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_pods.PortForward, "OPEN_TIMEOUT", 0.3)
    opener = _HangingFirst()
    monkeypatch.setattr(_pods, "portforward", opener)
    with _pods.PortForward(conn, "ns", "pod-1", 8443) as pf:
        started = time.monotonic()
        assert _round_trip(pf) == b"hello"
        assert time.monotonic() - started < 3
        assert opener.calls == 2
        assert "did not open within 0.3 s" in pf.failures[0]
        opener.release.set()  # the hung open completes late: its stream is closed, unused
        deadline = time.monotonic() + 5
        while opener.late is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert opener.late is not None
        deadline = time.monotonic() + 5
        while opener.late._ours.fileno() != -1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert opener.late._ours.fileno() == -1
