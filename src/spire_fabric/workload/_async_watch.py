"""Long-lived Workload API streams for the asyncio client; the twin of ``_watch``."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

import grpc

from ._backoff import BackoffPolicy
from ._base import FATAL_STREAM_CODES, ErrorCallback, logger, report
from ._errors import WorkloadApiError, WorkloadApiUnavailableError

__all__ = ["AsyncWatchStream", "AsyncWatcher"]

T = TypeVar("T")


class AsyncWatchStream(Generic[T]):
    """An endless async iterator of updates from one Workload API stream.

    Reconnects with backoff; errors go to ``on_error`` and the log. ``close()`` ends it.
    """

    def __init__(
        self,
        open_call: Callable[[], Awaitable[Any]],
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
        self._stop = asyncio.Event()
        self._call: Any = None
        self._iterator = self._run()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self._iterator.__anext__()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Stop the stream; safe to call from the event loop at any time."""
        self._stop.set()
        if self._call is not None:
            self._call.cancel()

    async def aclose(self) -> None:
        self.close()
        await self._iterator.aclose()

    async def __aenter__(self) -> AsyncWatchStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self) -> AsyncIterator[T]:
        backoff = self._backoff.start()
        while not self._stop.is_set():
            self._call = call = await self._open_call()
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
            except asyncio.CancelledError:
                # grpc.aio raises CancelledError when close() cancelled the call.
                if self._stop.is_set():
                    return
                raise
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
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)


class AsyncWatcher(Generic[T]):
    """A task feeding an AsyncWatchStream's updates to a callback (plain or async).

    A callback that raises is logged and the watch goes on. ``error`` holds the error that
    ended the watch, if any.
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
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    async def _run(self) -> None:
        try:
            async for item in self._stream:
                try:
                    result = self._on_update(item)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception("Workload API update callback %r raised", self._on_update)
        except WorkloadApiError as err:
            self.error = err

    @property
    def running(self) -> bool:
        return not self._task.done()

    async def aclose(self) -> None:
        self._stream.close()
        if self._task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> AsyncWatcher[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
