"""One check's run (verify._report.run_check): a Server API call that timed out or found no
connection gets one more try on a new connection, and the report says so; nothing else is
tried again."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from spire_fabric.server import DeadlineExceededError, UnavailableError
from spire_fabric.verify._report import CheckFailed, run_check


def _failing_then(answers: list[BaseException | str]) -> tuple[Callable[[], str], list[int]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        answer = answers[len(calls) - 1]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return fn, calls


def _deadline() -> DeadlineExceededError:
    return DeadlineExceededError(grpc.StatusCode.DEADLINE_EXCEEDED, "Stream removed",
                                 "entry.CountEntries")  # fmt: skip


def test_a_timed_out_call_that_answers_the_second_time_is_green_and_says_so() -> None:
    fn, calls = _failing_then([_deadline(), "SQLite: 7 entries"])
    result = run_check("datastore:s", "s datastore reachable", fn)
    assert result.ok and len(calls) == 2
    assert result.detail.startswith("SQLite: 7 entries (second try; the first: "
                                    "DeadlineExceededError: ")  # fmt: skip
    assert "Stream removed" in result.detail


def test_a_server_that_fails_both_tries_is_red_with_both_errors() -> None:
    gone = UnavailableError(grpc.StatusCode.UNAVAILABLE, "connection refused", "agent.GetAgent")
    fn, calls = _failing_then([_deadline(), gone])
    result = run_check("agent-attested:a", "a attested", fn)
    assert not result.ok and len(calls) == 2
    assert result.detail.startswith("UnavailableError: ")
    assert "connection refused" in result.detail and "(second try; the first: " in result.detail


@pytest.mark.parametrize("error", [CheckFailed("banned"), ValueError("bad")])
def test_other_failures_are_not_tried_again(error: Exception) -> None:
    fn, calls = _failing_then([error, "would be green"])
    result = run_check("c", "c", fn)
    assert not result.ok and len(calls) == 1
    assert "(second try" not in result.detail
