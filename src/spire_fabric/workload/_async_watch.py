"""Long-lived Workload API streams: reconnecting iterators, and watchers feeding a callback
from a background reader (an asyncio task; a daemon thread in the blocking twin).

The asyncio module is the one written by hand; `scripts/gen-sync` generates the blocking
twin from it. A stream that breaks (agent restart, socket gone) is reported and reopened
with backoff, forever, until closed. Only a request the agent calls invalid ends it,
because asking again cannot help; that too is reported, and re-raised to the consumer.
"""

from __future__ import annotations

import inspect  # ASYNC
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import grpc

from spire_fabric._concurrency import AsyncBackground, AsyncCancelled, AsyncEvent

from ._backoff import BackoffPolicy
from ._base import FATAL_STREAM_CODES, ErrorCallback, logger, report
from ._errors import WorkloadApiError, WorkloadApiUnavailableError

__all__ = ["AsyncWatchStream", "AsyncWatcher"]

T = TypeVar("T")


class AsyncWatchStream(Generic[T]):
    """An endless async iterator of updates from one Workload API stream.

    ``close()`` may be called at any time (in the blocking twin, from any thread); the
    iterator then stops. Errors go to ``on_error`` and the log; iteration continues after
    a reconnect.
    """

    def __init__(
        self,
        # Opens a gRPC streaming call (the async twin returns an awaitable of it).
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
        self._stop = AsyncEvent()
        self._lock = threading.Lock()
        self._call: Any = None
        self._iterator = self._run()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self._iterator.__anext__()

    @property
    def closed(self) -> bool:
        """Whether the stream was closed."""
        return self._stop.is_set()

    def close(self) -> None:
        """Stop the stream."""
        self._stop.set()
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()

    if True:  # ASYNC

        async def aclose(self) -> None:
            """Close the stream and finish its iterator."""
            self.close()
            await self._iterator.aclose()

    async def __aenter__(self) -> AsyncWatchStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if True:  # ASYNC
            await self.aclose()
        else:
            self.close()

    async def _run(self) -> AsyncGenerator[T, None]:
        backoff = self._backoff.start()
        while not self._stop.is_set():
            if True:  # ASYNC
                self._call = call = await self._open_call()
            else:
                with self._lock:
                    self._call = call = self._open_call()
            if self._stop.is_set():
                call.cancel()
                return
            try:
                async for response in call:
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
            except AsyncCancelled:
                # grpc.aio raises CancelledError when close() cancelled the call (the
                # blocking twin's grpc raises RpcError instead).
                if self._stop.is_set():
                    return
                raise
            except grpc.RpcError as err:
                if self._stop.is_set():
                    return
                error = self._error(err)
                if error.code in FATAL_STREAM_CODES:
                    report(error, self._on_error)
                    raise error from err
            finally:
                call.cancel()
            report(error, self._on_error)
            delay = backoff.next()
            logger.debug("%s: reconnecting to %s in %.2fs", self._what, self._endpoint, delay)
            if await self._stop.wait(delay):
                return


class AsyncWatcher(Generic[T]):
    """A background reader feeding a watch stream's updates to a callback (in the asyncio
    twin, a plain or async one).

    An exception in the callback is logged and the watch goes on: one bad handler must
    not stop identity rotation. ``error`` holds the error that ended the watch, if any.
    """

    def __init__(
        self,
        stream: AsyncWatchStream[T],
        on_update: Callable[[T], Any],
        name: str,
    ) -> None:
        self._stream = stream
        self._on_update = on_update
        self.error: WorkloadApiError | None = None
        self._reader = AsyncBackground(self._run, name)

    async def _run(self) -> None:
        try:
            async for item in self._stream:
                try:
                    if True:  # ASYNC
                        result = self._on_update(item)
                        if inspect.isawaitable(result):
                            await result
                    else:
                        self._on_update(item)
                except Exception:
                    logger.exception("Workload API update callback %r raised", self._on_update)
        except WorkloadApiError as err:
            self.error = err

    @property
    def running(self) -> bool:
        """Whether the watcher still reads updates."""
        return self._reader.is_alive()

    if True:  # ASYNC

        async def aclose(self) -> None:
            """Stop the stream and wait for the reader to finish."""
            self._stream.close()
            await self._reader.join()

    else:

        def close(self, timeout: float | None = 5.0) -> None:
            """Stop the stream and wait (up to ``timeout`` s) for the reader thread to finish."""
            self._stream.close()
            self._reader.join(timeout)

    async def __aenter__(self) -> AsyncWatcher[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if True:  # ASYNC
            await self.aclose()
        else:
            self.close()
