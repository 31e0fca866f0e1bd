"""`verify` shares one Server API client per server among its checks (each client is a
channel with its own TLS handshake, on Kubernetes through a port-forward), and refuses at
once a server found not live."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from spire_fabric.verify._report import CheckFailed
from spire_fabric.verify.checks import _LiveServersOnly


class FakeClient:
    def __init__(self, name: str) -> None:
        self.name, self.closed = name, 0

    def close(self) -> None:
        self.closed += 1

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def count_agents(self) -> int:
        return 3


class FakeDeployment:
    name = "d"

    def __init__(self, fail_first: bool = False) -> None:
        self.made: list[FakeClient] = []
        self.fail_first = fail_first

    def server(self, name: str) -> FakeClient:
        if self.fail_first:
            self.fail_first = False
            raise ConnectionError("port-forward refused")
        self.made.append(FakeClient(name))
        return self.made[-1]

    def replica_server(self, name: str, replica: str) -> FakeClient:
        self.made.append(FakeClient(f"{name}/{replica}"))
        return self.made[-1]


def test_checks_at_the_same_time_share_one_client_per_server_and_replica():
    d = FakeDeployment()
    live = _LiveServersOnly(d)  # type: ignore[arg-type]

    def one_check(i: int) -> int:
        name = "up" if i % 2 else "down"
        with live.server(name) as client:  # what a check does: it must not close it
            return client.count_agents()

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one_check, range(40))) == [3] * 40
    live.replica_server("down", "down-0").close()
    live.replica_server("down", "down-0")
    assert sorted(c.name for c in d.made) == ["down", "down/down-0", "up"]
    assert all(c.closed == 0 for c in d.made)
    live.close()
    assert all(c.closed == 1 for c in d.made)


def test_a_client_that_could_not_be_made_is_tried_again_by_the_next_check():
    d = FakeDeployment(fail_first=True)
    live = _LiveServersOnly(d)  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        live.server("down")
    assert live.server("down").count_agents() == 3
    live.close()
    assert [c.closed for c in d.made] == [1]


def test_a_server_found_not_live_is_refused_naming_the_check():
    live = _LiveServersOnly(FakeDeployment())  # type: ignore[arg-type]
    live.down.add("down")
    with pytest.raises(CheckFailed, match=r"down is not live \(see server-live:down\)"):
        live.server("down")
    with pytest.raises(CheckFailed):
        live.replica_server("down", "down-1")
