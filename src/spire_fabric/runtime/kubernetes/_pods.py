"""Reaching inside a pod: exec (the SPIRE CLI on the server's own socket, a Workload API
call as the workload) and a port-forward of our own (the server's TCP API, a workload's
port), both through the API server like kubectl, so nothing needs a route to pod IPs."""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward, stream

from spire_fabric.runtime.kubernetes._clusters import ClusterApi, api_error_message, label_selector
from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError

logger = logging.getLogger(__name__)


def _quiet_forward_threads() -> None:
    """The client's port-forward proxy thread dies with ConnectionResetError whenever the
    pod side or our side closes a connection, which is how every connection ends; that is
    not worth a traceback on the user's terminal. Everything else still reaches the hook."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread else ""
        if name.startswith("Kubernetes port forward proxy") and issubclass(
            args.exc_type, OSError
        ):
            return
        previous(args)

    threading.excepthook = hook


_quiet_forward_threads()


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str


def running_pod(conn: ClusterApi, namespace: str, labels: dict[str, str]) -> str:
    """The name of a Running, Ready pod with these labels."""
    selector = label_selector(labels)
    try:
        pods = conn.core.list_namespaced_pod(namespace, label_selector=selector).items
    except ApiException as err:
        raise KubernetesTargetError(
            f"cannot list pods {selector} in {namespace} of {conn.where()}: "
            f"{api_error_message(err)}"
        ) from err
    seen = []
    for pod in pods:
        statuses = pod.status.container_statuses or []
        ready = bool(statuses) and all(cs.ready for cs in statuses)
        if pod.metadata.deletion_timestamp is None and pod.status.phase == "Running" and ready:
            return str(pod.metadata.name)
        state = "terminating" if pod.metadata.deletion_timestamp else pod.status.phase
        seen.append(f"{pod.metadata.name} {state}{'' if ready else ', not ready'}")
    found = f" (found: {'; '.join(seen)})" if seen else " (none found)"
    raise KubernetesTargetError(
        f"no running pod {selector} in namespace {namespace} of {conn.where()}{found}"
    )


def exec_in_pod(
    conn: ClusterApi,
    namespace: str,
    pod: str,
    container: str,
    argv: list[str],
    *,
    timeout: float = 60,
) -> ExecResult:
    """Run ``argv`` in the container; stdout and stderr apart, and the exit status."""
    try:
        ws = stream(
            conn.streaming_core().connect_get_namespaced_pod_exec,
            pod,
            namespace,
            container=container,
            command=argv,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
    except ApiException as err:
        raise KubernetesTargetError(
            f"cannot exec in pod {namespace}/{pod} of {conn.where()}: {api_error_message(err)}"
        ) from err
    out: list[str] = []
    err_out: list[str] = []
    try:
        ws.run_forever(timeout=timeout)
        out.append(ws.read_stdout() or "")
        err_out.append(ws.read_stderr() or "")
        rc = ws.returncode
    finally:
        ws.close()
    return ExecResult(int(rc if rc is not None else -1), "".join(out), "".join(err_out))


def exec_json(
    conn: ClusterApi, namespace: str, pod: str, container: str, argv: list[str], what: str
) -> Any:
    result = exec_in_pod(conn, namespace, pod, container, argv)
    if result.returncode != 0:
        raise KubernetesTargetError(
            f"{what} in pod {namespace}/{pod} of {conn.where()} exited {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()[-500:]}"
        )
    try:
        return json.loads(result.stdout)
    except ValueError as err:
        raise KubernetesTargetError(
            f"{what} in pod {namespace}/{pod}: not JSON: {result.stdout[:200]!r}"
        ) from err


class PortForward:
    """``kubectl port-forward`` in-process: a loopback listener whose every connection is
    carried to the pod's port over its own API-server stream. Close it when done.

    Opening a stream is an HTTP upgrade through the API server to the kubelet, and on a
    loaded node one can fail, or hang, where the next succeeds; the connection waiting on
    it has sent nothing yet that would be lost, so the stream is tried ``OPEN_ATTEMPTS``
    times, each given ``OPEN_TIMEOUT`` seconds (the client's own open has no bound), before
    the connection is closed. Each failure is logged and kept in ``failures``.
    """

    OPEN_ATTEMPTS = 3
    OPEN_TIMEOUT = 4.0  # seconds; an open on a busy node takes well under one
    RETRY_PAUSE = 0.5  # seconds, times the attempt number
    FAILURES_KEPT = 20

    def __init__(self, conn: ClusterApi, namespace: str, pod: str, port: int) -> None:
        self.conn, self.namespace, self.pod, self.port = conn, namespace, pod, port
        self.failures: collections.deque[str] = collections.deque(maxlen=self.FAILURES_KEPT)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.local_port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._carrying = 0  # connections in flight
        self._count_lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name=f"pf-{pod}").start()

    @property
    def carrying(self) -> int:
        """Connections being carried now."""
        return self._carrying

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.local_port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._count_lock:
                self._carrying += 1
            threading.Thread(target=self._carry_counted, args=(client,), daemon=True).start()

    def _open(self) -> tuple[Any, Any] | None:
        """A new stream to the pod's port (the client's PortForward and its socket), or
        None after ``OPEN_ATTEMPTS`` failures or once this forward is closed."""
        for attempt in range(1, self.OPEN_ATTEMPTS + 1):
            if self._closed.is_set():
                return None
            try:
                pf = self._open_within(self.OPEN_TIMEOUT)
                return pf, pf.socket(self.port)
            except Exception as err:  # the client wraps every failure in ApiException
                why = (f"port-forward to {self.namespace}/{self.pod}:{self.port} of "
                       f"{self.conn.where()}: opening stream {attempt} of "
                       f"{self.OPEN_ATTEMPTS} failed: {str(err).strip()[:300]}")  # fmt: skip
                self.failures.append(why)
                logger.warning("%s", why)
                self._closed.wait(self.RETRY_PAUSE * attempt)
        return None

    def _open_within(self, seconds: float) -> Any:
        """The client's portforward, opened in a thread of its own so a hung upgrade costs
        ``seconds``, not the connection; a stream that opens too late is closed."""
        opened: Future[Any] = Future()

        def opener() -> None:
            try:
                opened.set_result(portforward(
                    self.conn.streaming_core().connect_get_namespaced_pod_portforward,
                    self.pod, self.namespace, ports=str(self.port)))  # fmt: skip
            except Exception as err:
                opened.set_exception(err)

        threading.Thread(target=opener, daemon=True, name=f"pf-open-{self.pod}").start()
        try:
            return opened.result(timeout=seconds)
        except FutureTimeout:
            opened.add_done_callback(_close_unused)
            raise TimeoutError(f"the stream did not open within {seconds:g} s") from None

    def _carry_counted(self, client: socket.socket) -> None:
        try:
            self._carry(client)
        finally:
            with self._count_lock:
                self._carrying -= 1

    def _carry(self, client: socket.socket) -> None:
        opened = self._open()
        if opened is None:
            client.close()
            return
        pf, remote = opened
        remote.setblocking(True)
        with contextlib.suppress(OSError):
            _pipe(client, remote, self._closed)
        for s in (client, remote):
            with contextlib.suppress(OSError):
                s.close()
        with contextlib.suppress(Exception):
            pf.close()

    def retire(self) -> None:
        """Take no new connections (the pod was replaced; a new forward takes them) and let
        those in flight end on their own, as they would with ``kubectl port-forward``."""
        self._stop_listening()

    def close(self) -> None:
        """Stop: no new connections, and those in flight are cut within a second."""
        self._closed.set()
        self._stop_listening()

    def _stop_listening(self) -> None:
        # close() alone leaves the socket listening while the accept thread is blocked in
        # accept() (the call holds it); shutdown() wakes that call and stops the listening.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> PortForward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_unused(opened: Future[Any]) -> None:
    """A stream that opened after its connection stopped waiting for it."""
    if opened.exception() is None:
        opened.result().close()


def _pipe(a: socket.socket, b: socket.socket, closed: threading.Event) -> None:
    peers = {a: b, b: a}
    while not closed.is_set():
        readable, _, _ = select.select([a, b], [], [], 1.0)
        for s in readable:
            data = s.recv(65536)
            if not data:
                return
            peers[s].sendall(data)


@contextlib.contextmanager
def port_forward(conn: ClusterApi, namespace: str, pod: str, port: int) -> Iterator[PortForward]:
    pf = PortForward(conn, namespace, pod, port)
    try:
        yield pf
    finally:
        pf.close()


def replace_pod(
    conn: ClusterApi, namespace: str, pod: str, timeout: float, *, interval: float = 2.0
) -> None:
    """Delete ``pod`` (its normal grace period) and return once its controller's
    replacement of the same name (a StatefulSet's) is Running with every container ready:
    a new uid tells the replacement from the pod still terminating."""
    try:
        old_uid = conn.core.read_namespaced_pod(pod, namespace).metadata.uid
        conn.core.delete_namespaced_pod(pod, namespace)
    except ApiException as err:
        raise KubernetesTargetError(f"cannot restart pod {namespace}/{pod} of {conn.where()}: "
                                    f"{api_error_message(err)}") from err  # fmt: skip
    deadline, seen = time.monotonic() + timeout, "not seen yet"
    while True:
        try:
            p = conn.core.read_namespaced_pod(pod, namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            seen = "gone, not recreated yet"
        else:
            statuses = p.status.container_statuses or []
            ready = bool(statuses) and all(cs.ready for cs in statuses)
            if p.metadata.uid != old_uid and p.status.phase == "Running" and ready:
                return
            seen = ("the old pod, terminating" if p.metadata.uid == old_uid
                    else f"replaced, {p.status.phase}{'' if ready else ', not ready'}")  # fmt: skip
        if time.monotonic() > deadline:
            raise KubernetesTargetError(
                f"pod {namespace}/{pod} of {conn.where()} not back and ready after "
                f"{timeout:g} s: {seen}"
            )
        time.sleep(interval)
