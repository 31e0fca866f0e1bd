"""A local `deploy plan` talks to no server when none runs, so it must not pay for gRPC,
protobuf and the API clients (a tenth of a 50k-registration plan's CPU): the server and
Workload API packages load their clients on first use. A fresh interpreter, because this
test session has imported everything already."""

from __future__ import annotations

from pathlib import Path

from fresh_interpreter import modules_after

NOT_LOADED = (
    "grpc",
    "google.protobuf",
    "spire_fabric.server._client",
    "spire_fabric.server._async_client",
    "spire_fabric.workload._client",
    "spire_fabric.verify",
    "spire_fabric.tls",
)


def test_a_fresh_local_plan_loads_neither_grpc_nor_the_clients(tmp_path: Path) -> None:
    state = tmp_path / "state"
    modules = modules_after(
        "from spire_fabric.deploy.cli import main\n"
        f"code = main(['plan', '--topology', 'scale:agents=2,workloads=4', '--state-dir', "
        f"{str(state)!r}, '--output', 'json'])\n"
        "assert code == 2, code"
    )
    assert "spire_fabric.runtime.local.planning" in modules  # the plan did run
    assert "AssertionError" not in modules
    assert {m for m in NOT_LOADED if m in modules} == set()


def test_the_clients_still_load_on_first_use() -> None:
    modules = modules_after(
        "import spire_fabric.server as s, spire_fabric.workload as w\n"
        "assert s.SpireServerClient.__name__ == 'SpireServerClient'\n"
        "assert w.WorkloadApiClient.__name__ == 'WorkloadApiClient'\n"
        "assert 'SpireServerClient' in dir(s) and 'X509Source' in dir(w)"
    )
    assert {"grpc", "spire_fabric.server._client", "spire_fabric.workload._client"} <= modules
