"""Long-lived Workload API streams for the sync client: reconnecting iterators and threads.

A stream that breaks (agent restart, socket gone) is reported and reopened with backoff,
forever, until closed. Only a request the agent calls invalid ends it, because asking
again cannot help; that too is reported, and re-raised to the iterator's consumer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import grpc

from ._backoff import BackoffPolicy
from ._base import FATAL_STREAM_CODES, ErrorCallback, logger, report
from ._errors import WorkloadApiError, WorkloadApiUnavailableError

__all__ = ["WatchStream", "Watcher"]

T = TypeVar("T")


class WatchStream(Generic[T]):
    """An endless iterator of updates from one Workload API stream.

    ``close()`` may be called from any thread; the iterator then stops. Errors go to
    ``on_error`` and the log; iteration continues after a reconnect.
    """

    def __init__(
        self,
        open_call: Callable[[], Any],
        convert: Callable[[Any], T],
        error: Callable[[grpc.RpcError], WorkloadApiError],
        *,
        what: str,
        endpoint: str,
        backoff: BackoffPolicy,
        on_error: ErrorCallback | None,
    ) -> None:
        self._open_call = open_call
        self._convert = convert
        self._error = error
        self._what = what
        self._endpoint = endpoint
        self._backoff = backoff
        self._on_error = on_error
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._call: Any = None
        self._iterator = self._run()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._iterator)

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()

    def __enter__(self) -> WatchStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> Iterator[T]:
        backoff = self._backoff.start()
        while not self._stop.is_set():
            with self._lock:
                self._call = call = self._open_call()
            if self._stop.is_set():
                call.cancel()
                return
            try:
                for response in call:
                    backoff.reset()
                    try:
                        item = self._convert(response)
                    except WorkloadApiError as err:
                        report(err, self._on_error)
                        continue
                    yield item
                error: WorkloadApiError = WorkloadApiUnavailableError(
                    f"{self._what}: the Workload API at {self._endpoint} ended the stream",
                    endpoint=self._endpoint,
                )
            except grpc.RpcError as err:
                if self._stop.is_set():
                    return
                error = self._error(err)
                if error.code in FATAL_STREAM_CODES:
                    report(error, self._on_error)
                    raise error from None
            finally:
                call.cancel()
            report(error, self._on_error)
            delay = backoff.next()
            logger.debug("%s: reconnecting to %s in %.2fs", self._what, self._endpoint, delay)
            if self._stop.wait(delay):
                return


class Watcher(Generic[T]):
    """A daemon thread feeding a WatchStream's updates to a callback.

    An exception in the callback is logged and the watch goes on: one bad handler must
    not stop identity rotation. ``error`` holds the error that ended the watch, if any.
    """

    def __init__(self, stream: WatchStream[T], on_update: Callable[[T], None], name: str) -> None:
        self._stream = stream
        self._on_update = on_update
        self.error: WorkloadApiError | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._stream:
                try:
                    self._on_update(item)
                except Exception:
                    logger.exception("Workload API update callback %r raised", self._on_update)
        except WorkloadApiError as err:
            self.error = err

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: float | None = 5.0) -> None:
        self._stream.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> Watcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
