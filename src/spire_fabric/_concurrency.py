"""The seam between the asyncio clients and their generated blocking twins.

Each primitive comes in two spellings, `AsyncX` (asyncio) and `X` (threads), with the same
methods; the asyncio code uses `AsyncX`, and `scripts/gen-sync` turns that into `X` in the
blocking twin (as httpcore's `_synchronization` does). Only behaviour that differs by nature
lives here: queues, events, and a background reader (an asyncio task or a daemon thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = [
    "AsyncBackground",
    "AsyncCancelled",
    "AsyncEvent",
    "AsyncQueue",
    "Background",
    "Cancelled",
    "Event",
    "Queue",
]

AsyncCancelled = asyncio.CancelledError


class Cancelled(Exception):
    """Never raised: blocking code is not cancelled. It keeps the blocking twin's `except`
    clauses the same as the asyncio ones."""


class AsyncQueue(Generic[T]):
    """An unbounded asyncio queue whose `get` gives up after `timeout` with TimeoutError."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[T] = asyncio.Queue()

    def put(self, item: T) -> None:
        self._queue.put_nowait(item)

    async def get(self, timeout: float | None = None) -> T:
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError as err:  # not the builtin TimeoutError before Python 3.11
            raise TimeoutError from err


class Queue(Generic[T]):
    """A thread-safe unbounded queue whose `get` gives up after `timeout` with TimeoutError."""

    def __init__(self) -> None:
        self._queue: queue.Queue[T] = queue.Queue()

    def put(self, item: T) -> None:
        self._queue.put(item)

    def get(self, timeout: float | None = None) -> T:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty as err:
            raise TimeoutError from err


class AsyncEvent:
    """A flag tasks can wait on; `wait` returns whether it was set within `timeout`."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        return self._event.is_set()


class Event:
    """A flag threads can wait on; `wait` returns whether it was set within `timeout`."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


class AsyncBackground:
    """`target()` running as a task of the current event loop."""

    def __init__(self, target: Callable[[], Awaitable[None]], name: str) -> None:
        self._task = asyncio.get_running_loop().create_task(_run(target), name=name)

    def is_alive(self) -> bool:
        return not self._task.done()

    async def join(self, timeout: float | None = None) -> None:
        """Wait for the task to end, unless called from the task itself; what it raised
        (or its cancellation) is not re-raised. `timeout` is for the threads' twin: a task
        that was told to stop ends at its next `await`."""
        if self._task is not asyncio.current_task():
            await asyncio.gather(self._task, return_exceptions=True)


class Background:
    """`target()` running in a daemon thread."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait (up to `timeout`) for the thread to end, unless called from the thread itself."""
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


async def _run(target: Callable[[], Awaitable[None]]) -> None:
    await target()
