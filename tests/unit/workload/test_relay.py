"""`python -m spire_fabric.workload.relay`: every audience in one process, and waiting in
that process while the agent has no identity for it yet (a pod still being attested).

Why a double for the Workload API: what is judged is the relay's own asking (which calls,
how often, when it gives up), not the agent's answers; the real relay runs against real
agents in every Kubernetes `verify`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from spire_fabric.proto.workload import workload_pb2
from spire_fabric.workload import relay as relay_module
from spire_fabric.workload._errors import NoIdentityIssuedError, WorkloadApiUnavailableError


class FakeClient:
    """Answers FetchX509SVID after ``refusals`` refusals, and everything else at once."""

    def __init__(self, refusals: int = 0, error: type[Exception] = NoIdentityIssuedError):
        self.refusals, self.error = refusals, error
        self.calls: list[tuple[str, Any]] = []

    def _first(self, method: str, request: Any, timeout: float) -> Any:
        self.calls.append((method, request))
        if method == "FetchX509SVID":
            if self.refusals:
                self.refusals -= 1
                raise self.error("no identity issued")
            return workload_pb2.X509SVIDResponse(crl=[b"x509"])
        return workload_pb2.JWTBundlesResponse(bundles={"example.org": b"{}"})

    def _unary(self, method: str, request: Any, timeout: float) -> Any:
        self.calls.append((method, request))
        return workload_pb2.JWTSVIDResponse(
            svids=[workload_pb2.JWTSVID(spiffe_id=request.spiffe_id, svid=request.audience[0])]
        )

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _jwt(encoded: str) -> workload_pb2.JWTSVIDResponse:
    return workload_pb2.JWTSVIDResponse.FromString(base64.b64decode(encoded))


def test_every_audience_is_answered_by_one_relay() -> None:
    client = FakeClient()
    out = relay_module.relay(client, [("a", "spiffe://td/w"), ("b", "spiffe://td/w")])  # type: ignore[arg-type]
    assert set(out) == {"x509", "jwt_bundles", "jwt"}
    assert {aud: _jwt(v).svids[0].svid for aud, v in out["jwt"].items()} == {"a": "a", "b": "b"}
    assert [m for m, _ in client.calls].count("FetchX509SVID") == 1


def test_without_an_audience_there_is_no_jwt() -> None:
    out = relay_module.relay(FakeClient())  # type: ignore[arg-type]
    assert set(out) == {"x509", "jwt_bundles"}


@pytest.mark.parametrize("error", [NoIdentityIssuedError, WorkloadApiUnavailableError])
def test_waits_while_the_agent_has_no_identity_yet(
    monkeypatch: pytest.MonkeyPatch, error: type[Exception]
) -> None:
    monkeypatch.setattr(relay_module, "RETRY_S", 0.001)
    client = FakeClient(refusals=3, error=error)
    out = relay_module.relay(client, wait=5)  # type: ignore[arg-type]
    assert workload_pb2.X509SVIDResponse.FromString(base64.b64decode(out["x509"])).crl == [b"x509"]
    assert [m for m, _ in client.calls].count("FetchX509SVID") == 4


def test_without_wait_a_refusal_is_the_answer() -> None:
    client = FakeClient(refusals=1)
    with pytest.raises(NoIdentityIssuedError):
        relay_module.relay(client)  # type: ignore[arg-type]
    assert len(client.calls) == 1


def test_the_wait_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_module, "RETRY_S", 0.01)
    client = FakeClient(refusals=10_000)
    with pytest.raises(NoIdentityIssuedError):
        relay_module.relay(client, wait=0.05)  # type: ignore[arg-type]
    assert 2 <= len(client.calls) <= 8


def test_main_prints_the_answers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(relay_module, "WorkloadApiClient", FakeClient)
    assert relay_module.main(["--wait", "1", "aud", "spiffe://td/w"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert _jwt(out["jwt"]["aud"]).svids[0].spiffe_id == "spiffe://td/w"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["aud"], "AUDIENCE and SPIFFE_ID come in pairs; got 1 values"),
        (["--wait", "-1"], "--wait must be 0 to 600 seconds, not -1.0"),
        (["--wait", "nan"], "--wait must be 0 to 600 seconds, not nan"),
        (["--wait", "inf"], "--wait must be 0 to 600 seconds, not inf"),
        (["--wait", "soon"], "invalid float value: 'soon'"),
    ],
)
def test_bad_arguments_are_named(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        relay_module.main(argv)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


def test_an_agent_that_cannot_be_reached_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The installer shows the relay's last line: the reason, not a traceback's tail."""
    monkeypatch.setenv("SPIFFE_ENDPOINT_SOCKET", "unix:///nonexistent/agent.sock")
    monkeypatch.setattr(
        relay_module, "WorkloadApiClient", lambda: FakeClient(10, WorkloadApiUnavailableError)
    )
    assert relay_module.main([]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "relay: no identity issued\n"
