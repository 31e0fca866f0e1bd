"""The SPIRE agent's admin API client (Delegated Identity, Debug, Logger), for asyncio
(grpc.aio) and blocking code.

    from spire_fabric.agent import SpireAgentClient

    with SpireAgentClient("/run/spire/agent/admin/admin.sock") as agent:
        with agent.subscribe_to_x509_svids(["k8s:pod-uid:1234"]) as updates:
            for update in updates:
                ...  # update.svids: identity.X509Svid (with key), update.federates_with

The asyncio client is the one written by hand; `scripts/gen-sync` generates the blocking
twin from it (the same class names without `Async`, the same methods without `await`).
Who may call, and which SPIRE versions serve what: see `spire_fabric.agent._api`.

Streams (`subscribe_*`) return a subscription: opening waits for the FIRST update
within `timeout` (so authorization errors and a missing socket raise right there, and
opening is retried on transient errors like the other retried calls); after that the
stream stays open until `close()`. Errors, models and retry rules are the server
client's (see `spire_fabric.server._errors`).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar

import grpc

from spire_fabric._concurrency import AsyncBackground, AsyncCancelled, AsyncEvent, AsyncQueue
from spire_fabric.agent._api import AgentClientBase, AgentInfo, X509SvidUpdate
from spire_fabric.identity import JwtBundle, JwtSvid, TrustDomain, X509Bundle
from spire_fabric.server._calls import Call
from spire_fabric.server._client_config import DEFAULT_TIMEOUT
from spire_fabric.server._errors import (
    DeadlineExceededError,
    SpireApiError,
    SpireClientConfigError,
    UnavailableError,
)
from spire_fabric.server._models import LoggerLevels, LogLevel, SelectorLike
from spire_fabric.server._retry import RetryPolicy
from spire_fabric.server._transport import open_aio

__all__ = ["AsyncSpireAgentClient", "AsyncSubscription"]

T = TypeVar("T")

_MSG, _ERR, _END = "msg", "err", "end"


class AsyncSubscription(Generic[T]):
    """An open Delegated Identity stream: iterate it, or `next_update(timeout)`.

    A background reader (a task; a daemon thread in the blocking twin) reads the gRPC
    stream into a queue, so `next_update` can wait with a timeout without tearing the
    stream down. Iteration ends after `close()`; an error from the agent (e.g.
    PermissionDeniedError when the caller's delegate entry is removed) is raised to the
    reader once, then the subscription is over.
    """

    def __init__(
        self,
        stream: Any,
        parse: Callable[[Any], T],
        error: Callable[[grpc.RpcError], SpireApiError],
        name: str,
    ) -> None:
        self.name = name
        self._stream = stream
        self._parse = parse
        self._error = error
        self._queue: AsyncQueue[tuple[str, Any]] = AsyncQueue()
        self._closed = AsyncEvent()
        self._done = False
        self._first: tuple[str, Any] | None = None
        self._reader = AsyncBackground(self._pump, f"spire-agent-{name}")

    async def _pump(self) -> None:
        try:
            async for message in self._stream:
                self._queue.put((_MSG, message))
        except grpc.RpcError as err:
            if not self._closed.is_set():
                self._queue.put((_ERR, self._error(err)))
        except AsyncCancelled:
            pass
        self._queue.put((_END, None))

    async def _prime(self, deadline: float) -> None:
        """Wait for the first message (or error) so opening fails fast and visibly."""
        try:
            item = await self._queue.get(max(0.0, deadline - time.monotonic()))
        except TimeoutError as err:
            await self.close()
            raise DeadlineExceededError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "no first update from the agent before the deadline",
                self.name,
            ) from err
        if item[0] != _MSG:
            await self.close()
            raise item[1] if item[0] == _ERR else self._ended()
        self._first = item

    def _ended(self) -> SpireApiError:
        return UnavailableError(
            grpc.StatusCode.UNAVAILABLE, "the agent ended the stream", self.name
        )

    async def _take(self, timeout: float | None) -> T:
        if self._done:
            raise StopAsyncIteration
        first, self._first = self._first, None
        try:
            kind, value = first or await self._queue.get(timeout)
        except TimeoutError as err:
            raise DeadlineExceededError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no update from the agent within {timeout} seconds (the stream stays open)",
                self.name,
            ) from err
        if kind == _MSG:
            return self._parse(value)
        self._done = True
        if kind == _ERR:
            raise value
        if self._closed.is_set():
            raise StopAsyncIteration
        raise self._ended()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self._take(None)

    async def next_update(self, timeout: float | None = None) -> T:
        """The next update; DeadlineExceededError if none arrives within `timeout` s."""
        try:
            return await self._take(timeout)
        except StopAsyncIteration as err:
            raise SpireClientConfigError(f"the {self.name} subscription is closed") from err

    async def close(self) -> None:
        """End the stream; iteration stops after queued updates. The asyncio twin also
        waits for its reader task; the blocking twin may be closed from any thread."""
        if not self._closed.is_set():
            self._closed.set()
            self._stream.cancel()
            if True:  # ASYNC
                await self._reader.join()

    async def __aenter__(self) -> AsyncSubscription[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncSpireAgentClient(AgentClientBase):
    """Client of one SPIRE agent's admin socket (`admin_socket_path`).

    `timeout` (seconds) bounds each unary call including retries, and for `subscribe_*`
    the wait for the first update. Use `async with AsyncSpireAgentClient(path) as agent:`,
    or `await agent.close()`.
    """

    def __init__(
        self,
        address: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(address, timeout=timeout, retry=retry)
        self._channel = open_aio(self._spec)
        self._make_stubs(self._channel)
        self._subscriptions: weakref.WeakSet[AsyncSubscription[Any]] = weakref.WeakSet()

    async def close(self) -> None:
        """Close open subscriptions (their iteration ends) and the channel."""
        if not self._closed:
            self._closed = True
            for sub in list(self._subscriptions):
                await sub.close()
            await self._channel.close()

    async def __aenter__(self) -> AsyncSpireAgentClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- sending -----------------------------------------------------------------------

    async def _attempt(self, call: Call[T], deadline: float) -> T:
        method, remaining = self._method(call, deadline)
        try:
            response = await method(call.request, timeout=remaining, wait_for_ready=True)
        except grpc.RpcError as err:
            raise self._rpc_error(err, call) from err
        return call.parse(response)

    async def _send(self, call: Call[T], timeout: float | None) -> T:
        deadline = self._deadline(timeout)
        async for attempt in self.retry.aio(deadline):
            with attempt:
                return await self._attempt(call, deadline)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _open(self, call: Call[T], deadline: float) -> AsyncSubscription[T]:
        method, _ = self._method(call, deadline)
        # No gRPC deadline on the stream itself (it would end a healthy subscription);
        # the first-update wait in _prime is the deadline.
        stream = method(call.request, wait_for_ready=True)
        sub = AsyncSubscription(
            stream, call.parse, lambda err: self._rpc_error(err, call), call.name
        )
        await sub._prime(deadline)
        self._subscriptions.add(sub)
        return sub

    async def _subscribe(self, call: Call[T], timeout: float | None) -> AsyncSubscription[T]:
        deadline = self._deadline(timeout)
        async for attempt in self.retry.aio(deadline):
            with attempt:
                return await self._open(call, deadline)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    # ---- delegated identity ------------------------------------------------------------

    async def subscribe_to_x509_svids(
        self,
        selectors: Iterable[SelectorLike] | SelectorLike | None = None,
        *,
        pid: int | None = None,
        timeout: float | None = None,
    ) -> AsyncSubscription[X509SvidUpdate]:
        """X.509-SVIDs for the workload described by `selectors` (trusted as given) or
        attested by `pid`, as they are issued and rotated."""
        call = self._agent_ops.subscribe_to_x509_svids(selectors, pid)
        return await self._subscribe(call, timeout)

    async def subscribe_to_x509_bundles(
        self, *, timeout: float | None = None
    ) -> AsyncSubscription[Mapping[TrustDomain, X509Bundle]]:
        """The agent's X.509 bundles (own and federated), a full mapping per update."""
        call = self._agent_ops.subscribe_to_x509_bundles()
        return await self._subscribe(call, timeout)

    async def subscribe_to_jwt_bundles(
        self, *, timeout: float | None = None
    ) -> AsyncSubscription[Mapping[TrustDomain, JwtBundle]]:
        """The agent's JWT bundles (own and federated), a full mapping per update."""
        call = self._agent_ops.subscribe_to_jwt_bundles()
        return await self._subscribe(call, timeout)

    async def fetch_jwt_svids(
        self,
        audience: Sequence[str] | str,
        selectors: Iterable[SelectorLike] | SelectorLike | None = None,
        *,
        pid: int | None = None,
        timeout: float | None = None,
    ) -> list[JwtSvid]:
        """A JWT-SVID for `audience` per identity of the workload (retried).

        PermissionDeniedError ("no identity issued") when no entry matches the workload.
        """
        call = self._agent_ops.fetch_jwt_svids(audience, selectors, pid)
        return await self._send(call, timeout)

    # ---- debug / logger ----------------------------------------------------------------

    async def get_info(self, *, timeout: float | None = None) -> AgentInfo:
        """The agent's SVID chain, uptime, last sync and cache counts (retried)."""
        return await self._send(self._agent_ops.get_info(), timeout)

    async def get_log_level(self, *, timeout: float | None = None) -> LoggerLevels:
        """Current and launch log levels (SPIRE >= 1.15.2 agents) (retried)."""
        return await self._send(self._agent_ops.get_log_level(), timeout)

    async def set_log_level(
        self, level: LogLevel | str, *, timeout: float | None = None
    ) -> LoggerLevels:
        """Change the agent's log level at runtime (SPIRE >= 1.15.2 agents) (retried)."""
        return await self._send(self._agent_ops.set_log_level(level), timeout)

    async def reset_log_level(self, *, timeout: float | None = None) -> LoggerLevels:
        """Back to the launch level (SPIRE >= 1.15.2 agents) (retried)."""
        return await self._send(self._agent_ops.reset_log_level(), timeout)
