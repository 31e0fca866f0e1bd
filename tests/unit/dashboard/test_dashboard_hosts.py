"""The dashboard answers only its own Host names (DNS rebinding), and reaches a deployment
wherever `up` put its state (``--state-dir``, ``--target``)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from spire_fabric.dashboard import __main__ as cli
from spire_fabric.dashboard import create_app
from spire_fabric.dashboard._app import LOOPBACK_HOSTS
from spire_fabric.topology import dump_topology, preset


class _Unused:
    """A deployment no test here reaches: a refused Host never gets past the middleware."""

    name = "basic"

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the deployment was used ({name}) for a refused request")


@pytest.fixture
def loopback_app() -> Any:
    return create_app(_Unused(), allowed_hosts=LOOPBACK_HOSTS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "host", ["attacker.example", "attacker.example:8765", "127.0.0.1.nip.io:8765", "", "a b"]
)
def test_a_foreign_host_header_gets_400_before_any_route(loopback_app: Any, host: str) -> None:
    client = TestClient(loopback_app, base_url="http://localhost:8765")
    response = client.get("/api/summary.json", headers={"host": host})
    assert response.status_code == 400
    assert response.text == "Invalid host header"
    assert response.headers["x-frame-options"] == "DENY"  # security headers on the 400 too


@pytest.mark.parametrize("host", ["localhost:8765", "127.0.0.1:8765", "[::1]:8765", "LOCALHOST"])
def test_the_loopback_names_are_answered(loopback_app: Any, host: str) -> None:
    client = TestClient(loopback_app, base_url="http://localhost:8765")
    # /static/ is served without the deployment: the Host check passed if this is not 400
    response = client.get("/static/does-not-exist.js", headers={"host": host})
    assert response.status_code == 404


def test_allowing_any_host_is_refused() -> None:
    with pytest.raises(ValueError, match="allowed_hosts must name"):
        create_app(_Unused(), allowed_hosts=["*"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bind", "extra", "expected"),
    [
        ("127.0.0.1", [], ["localhost", "127.0.0.1", "[::1]"]),
        ("::1", [], ["localhost", "127.0.0.1", "[::1]"]),
        (
            "localhost",
            ["Dash.Example.org"],
            ["localhost", "127.0.0.1", "[::1]", "dash.example.org"],
        ),
        ("10.1.2.3", [], ["10.1.2.3"]),
        ("fd00::5", ["proxy.example.org"], ["[fd00::5]", "proxy.example.org"]),
    ],
)
def test_allowed_hosts_follow_the_bind_address(
    bind: str, extra: list[str], expected: list[str]
) -> None:
    assert cli.allowed_hosts(bind, extra) == expected


def test_binding_all_interfaces_allows_this_machines_names_and_loopback() -> None:
    hosts = cli.allowed_hosts("0.0.0.0", [])
    assert hosts[:3] == list(LOOPBACK_HOSTS)
    assert socket.gethostname().lower() in hosts
    assert "attacker.example" not in hosts


class _Served:
    """What main() handed to uvicorn.run, instead of serving."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import uvicorn

        self.calls: list[tuple[Any, str, int]] = []
        monkeypatch.setattr(
            uvicorn, "run", lambda app, host, port, **_: self.calls.append((app, host, port))
        )


def _local_state(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "state.json").write_text(json.dumps({"topology": "basic"}))
    (path / "topology.yaml").write_text(dump_topology(preset("basic")))
    return path


def test_state_dir_reaches_a_deployment_outside_the_state_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "empty-root"))  # nothing by name
    served = _Served(monkeypatch)
    state = _local_state(tmp_path / "elsewhere")

    assert cli.main(["--deployment", "basic", "--state-dir", str(state), "--port", "9"]) == 0

    ((app, host, port),) = served.calls
    assert (host, port) == ("127.0.0.1", 9)
    assert "dashboard of basic: http://127.0.0.1:9/" in capsys.readouterr().out
    client = TestClient(app, base_url="http://127.0.0.1:9")
    assert client.get("/", headers={"host": "rebound.example:9"}).status_code == 400


def test_without_state_dir_the_same_deployment_is_not_found_and_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "empty-root"))
    served = _Served(monkeypatch)
    _local_state(tmp_path / "elsewhere")

    assert cli.main(["--deployment", "basic"]) == 2

    assert served.calls == []
    err = capsys.readouterr().err
    assert err.startswith("dashboard: ") and err.count("\n") == 1
    assert str(tmp_path / "empty-root" / "spire-fabric" / "basic") in err


def test_target_kubernetes_opens_the_kubernetes_state_of_that_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spire_fabric.runtime.kubernetes import KubernetesDeployment

    served = _Served(monkeypatch)
    opened: list[Path] = []
    real_open = KubernetesDeployment.open.__func__  # type: ignore[attr-defined]

    def spy(cls: type[KubernetesDeployment], path: Path) -> KubernetesDeployment:
        opened.append(Path(path))
        return real_open(cls, path)  # type: ignore[no-any-return]

    monkeypatch.setattr(KubernetesDeployment, "open", classmethod(spy))
    state = tmp_path / "kube-state"
    state.mkdir()
    (state / "kubernetes.json").write_text(json.dumps({"kubeconfig": "/nonexistent"}))
    (state / "topology.yaml").write_text(dump_topology(preset("basic")))

    argv = ["--deployment", "basic", "--target", "kubernetes", "--state-dir", str(state)]
    assert cli.main(argv) == 0  # opening reads files only; the clusters are reached on use

    assert opened == [state] and len(served.calls) == 1


def test_target_kubernetes_without_its_state_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _Served(monkeypatch)
    empty = tmp_path / "nothing"
    empty.mkdir()
    argv = ["--target", "kubernetes", "--state-dir", str(empty)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no kubernetes deployment of 'enterprise' in" in err
    assert str(empty) in err
