"""The generated stubs import cleanly, live under spire_fabric, and match scripts/gen-protos."""

from __future__ import annotations

import filecmp
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PROTO_DIR = REPO / "src" / "spire_fabric" / "proto"

SERVER_APIS = [
    "agent",
    "bundle",
    "entry",
    "svid",
    "trustdomain",
    "localauthority",
    "debug",
    "logger",
]
AGENT_APIS = ["delegatedidentity", "debug", "logger"]


@pytest.mark.parametrize("api", SERVER_APIS)
def test_every_server_api_stub_imports(api: str) -> None:
    grpc_mod = importlib.import_module(
        f"spire_fabric.proto.spire.api.server.{api}.v1.{api}_pb2_grpc"
    )
    stubs = [name for name in dir(grpc_mod) if name.endswith("Stub")]
    assert stubs, f"no gRPC stub class in server {api} API"


@pytest.mark.parametrize("api", AGENT_APIS)
def test_every_agent_api_stub_imports(api: str) -> None:
    grpc_mod = importlib.import_module(
        f"spire_fabric.proto.spire.api.agent.{api}.v1.{api}_pb2_grpc"
    )
    assert any(name.endswith("Stub") for name in dir(grpc_mod))


def test_nothing_claims_the_top_level_spire_name() -> None:
    importlib.import_module("spire_fabric.proto.spire.api.server.entry.v1.entry_pb2_grpc")
    assert "spire" not in sys.modules
    for path in PROTO_DIR.rglob("*.py"):
        text = path.read_text()
        assert "\nfrom spire." not in text and "\nimport spire." not in text, path


def test_workload_stubs_coexist_with_py_spiffe_in_one_process() -> None:
    # py-spiffe registers workload.proto (X509SVIDRequest, ...) in the default pool; ours must
    # not collide with it, and both must still speak the same wire format.
    from spiffe._proto import workload_pb2 as theirs

    from spire_fabric.proto.workload import workload_pb2 as ours

    msg = ours.X509SVIDResponse(svids=[ours.X509SVID(spiffe_id="spiffe://example.org/a")])
    decoded = theirs.X509SVIDResponse.FromString(msg.SerializeToString())
    assert decoded.svids[0].spiffe_id == "spiffe://example.org/a"
    assert ours.DESCRIPTOR.services_by_name["SpiffeWorkloadAPI"].full_name == "SpiffeWorkloadAPI"


def test_generated_stubs_match_the_generator(tmp_path: Path) -> None:
    if shutil.which("go") is None:
        pytest.skip("Go is not installed: cannot run scripts/gen-protos to check for drift")
    out = tmp_path / "proto"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen-protos"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    drift = _diff_trees(PROTO_DIR, out)
    assert not drift, f"committed stubs differ from scripts/gen-protos output: {drift[:10]}"


def _diff_trees(a: Path, b: Path) -> list[str]:
    def files(root: Path) -> set[str]:
        return {
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    fa, fb = files(a), files(b)
    problems = [f"only committed: {f}" for f in sorted(fa - fb)]
    problems += [f"only generated: {f}" for f in sorted(fb - fa)]
    problems += [
        f"differs: {f}" for f in sorted(fa & fb) if not filecmp.cmp(a / f, b / f, shallow=False)
    ]
    return problems
