"""Listings ask for the next page before converting this one, and behave as before otherwise.

Why it matters: at 10k entries `entries list` waited for each page of the server and then
converted it, one after the other; asking for page N+1 as soon as page N's token is known
lets the server read it while we convert (docs/performance.md). What must not change:
order, every item once, an error raised when iteration reaches the failing page (after
every item before it), and a caller that stops early is not kept waiting.

`_send` is replaced by a recorder that serves pages from a dict, so the order of requests
and conversions is observable; the real RPC path is covered by the e2e entries tests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import grpc
import pytest

from spire_fabric.server import (
    AsyncSpireServerClient,
    SpireServerClient,
    UnavailableError,
)
from spire_fabric.server._calls import Call, Paged

NOWHERE = "unix:///tmp/spire-fabric-no-such-dir/api.sock"
PAGES = {"": (["a", "b"], "t1"), "t1": (["c"], "t2"), "t2": (["d", "e"], "")}


class Recorder:
    def __init__(self, fail_at: str | None = None) -> None:
        self.events: list[str] = []
        self.fail_at = fail_at
        self.lock = threading.Lock()
        self.sent = {token: threading.Event() for token in PAGES}

    def log(self, event: str) -> None:
        with self.lock:
            self.events.append(event)

    def paged(self) -> Paged[str]:
        def page(token: str) -> Call[tuple[Sequence[Any], str]]:
            return Call("entry", "ListEntries", token, lambda r: r, idempotent=True)

        def convert(raw: Sequence[Any]) -> list[str]:
            # the sync client sends the next page from a thread: give it the time to,
            # which it has only if it was asked for before this conversion
            nxt = {"a": "t1", "c": "t2"}.get(raw[0])
            if nxt and nxt != self.fail_at and self.sent[nxt].wait(2):
                self.log(f"{nxt} in flight")
            self.log(f"convert {','.join(raw)}")
            return [x.upper() for x in raw]

        return Paged(page, convert)

    def serve(self, call: Call[Any]) -> tuple[list[str], str]:
        self.log(f"send {call.request or 'first'}")
        self.sent[call.request].set()
        if call.request == self.fail_at:
            raise UnavailableError(grpc.StatusCode.UNAVAILABLE, "gone", "entry.ListEntries")
        return PAGES[call.request]


def _sync_client(recorder: Recorder) -> SpireServerClient:
    client = SpireServerClient(NOWHERE, timeout=5)
    client._send = lambda call, timeout: recorder.serve(call)  # type: ignore[method-assign]
    return client


def test_every_item_in_order_and_the_next_page_is_asked_for_before_this_one_is_converted():
    recorder = Recorder()
    with _sync_client(recorder) as client:
        assert list(client._iterate(recorder.paged(), None)) == ["A", "B", "C", "D", "E"]
    events = recorder.events
    assert events.index("t1 in flight") < events.index("convert a,b")
    assert events.index("t2 in flight") < events.index("convert c")
    assert events.count("send t1") == events.count("send t2") == 1  # asked for once each


def test_a_failing_page_raises_after_every_item_before_it():
    recorder = Recorder(fail_at="t2")
    got: list[str] = []
    with _sync_client(recorder) as client, pytest.raises(UnavailableError):
        for item in client._iterate(recorder.paged(), None):
            got.append(item)
    assert got == ["A", "B", "C"]


def test_stopping_early_returns_at_once_and_converts_nothing_more():
    recorder = Recorder()
    with _sync_client(recorder) as client:
        pages = client._iterate(recorder.paged(), None)
        assert next(pages) == "A"
        pages.close()
    assert [e for e in recorder.events if e.startswith("convert")] == ["convert a,b"]


def test_the_async_client_asks_ahead_as_well_and_raises_at_the_same_item():
    async def run(recorder: Recorder) -> list[str]:
        client = AsyncSpireServerClient(NOWHERE, timeout=5)

        async def send(call: Call[Any], timeout: float | None) -> tuple[list[str], str]:
            return recorder.serve(call)

        client._send = send  # type: ignore[method-assign]
        got: list[str] = []
        try:
            async for item in client._iterate(recorder.paged(), None):
                got.append(item)
        finally:
            await client.close()
        return got

    recorder = Recorder()
    assert asyncio.run(run(recorder)) == ["A", "B", "C", "D", "E"]
    assert recorder.events.index("t1 in flight") < recorder.events.index("convert a,b")
    failing = Recorder(fail_at="t1")
    with pytest.raises(UnavailableError):
        asyncio.run(run(failing))
    assert [e for e in failing.events if e.startswith("convert")] == ["convert a,b"]
