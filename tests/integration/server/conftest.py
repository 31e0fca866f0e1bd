"""Fixtures for the SPIRE Server API client tests: a real server, both clients, and an
admin X.509-SVID fetched from a real agent's Workload API (for the TCP/mTLS path)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from spire_fabric.identity import TrustDomain, X509Bundle, X509Svid
from spire_fabric.proto.workload import workload_pb2, workload_pb2_grpc
from spire_fabric.server import AsyncSpireServerClient, SpireServerClient
from spire_fabric.testing import SpireAgentProcess, SpireServerProcess, current_uid_selector

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class FetchedSvid:
    """What a workload gets from the Workload API: its SVID (an ``X509Svid`` is its own
    svid_source) and its trust domain's bundle (its own bundle_source)."""

    svid: X509Svid
    bundle: X509Bundle


def fetch_x509_svid(agent: SpireAgentProcess, spiffe_id: str, timeout: float = 30.0) -> FetchedSvid:
    """Fetch `spiffe_id`'s SVID from the agent with the raw Workload API stubs.

    The agent may not have synced the entry yet, so this polls until it appears.
    """
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(agent.endpoint) as channel:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        while time.monotonic() < deadline:
            try:
                stream = stub.FetchX509SVID(
                    workload_pb2.X509SVIDRequest(),
                    metadata=(("workload.spiffe.io", "true"),),
                    timeout=5,
                )
                for response in stream:
                    for svid in response.svids:
                        if svid.spiffe_id == spiffe_id:
                            stream.cancel()
                            return _decode(svid)
                    break
            except grpc.RpcError:
                pass  # PermissionDenied until the entry reaches the agent
            time.sleep(0.5)
    raise AssertionError(f"agent never served an SVID for {spiffe_id}")


def _decode(svid: Any) -> FetchedSvid:
    td = TrustDomain.parse(svid.spiffe_id)
    return FetchedSvid(
        X509Svid.parse_der(svid.x509_svid, svid.x509_svid_key),
        X509Bundle.parse_der(td, svid.bundle),
    )


def cli_json(server: SpireServerProcess, *args: str) -> Any:
    """SPIRE's own CLI, `-output json`, parsed: the oracle for what the server stores."""
    return json.loads(server.cli(*args, "-output", "json").stdout)


def register_admin(server: SpireServerProcess, agent: SpireAgentProcess, path: str) -> str:
    """An admin entry for this test process's uid under `agent`; returns its SPIFFE ID."""
    spiffe_id = f"spiffe://{server.trust_domain}{path}"
    server.cli(
        "entry", "create", "-spiffeID", spiffe_id, "-parentID", agent.spiffe_id,
        "-selector", current_uid_selector(), "-admin",
    )  # fmt: skip
    return spiffe_id


@pytest.fixture
def client(spire_server: SpireServerProcess) -> Iterator[SpireServerClient]:
    with SpireServerClient(f"unix://{spire_server.socket_path}", timeout=15) as c:
        yield c


@pytest.fixture
async def aclient(spire_server: SpireServerProcess) -> AsyncIterator[AsyncSpireServerClient]:
    async with AsyncSpireServerClient(str(spire_server.socket_path), timeout=15) as c:
        yield c
