"""A whole enterprise topology, really running, for end-to-end tests.

One deployment per module (bringing it up costs ~10 s); each fault test heals what it broke
with `up` before the next one starts, and asserts it did.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from spire_fabric.runtime.local import LocalDeployment
from spire_fabric.runtime.local.ports import is_listening
from spire_fabric.testing import short_tempdir
from spire_fabric.verify import Report, verify_deployment

# Every local port of the enterprise preset relative to the port base (see localize.py and
# example_workloads.py: the gateway on 30080 and the API on 30443 move with it too)
_PORT_OFFSETS = (
    *(-920, -557, 79, 80, 81, 443, 1079, 1080, 1081, 1443),  # telemetry on API - 2
    *range(8180 - 31000, 8184 - 31000),  # agents' health
    *range(8280 - 31000, 8284 - 31000),  # agents' telemetry
    9988 - 31000,  # servers' telemetry in presets without NodePorts (basic, nested)
    # servers of presets without NodePorts keep their container ports, moved with the base
    *(8080 - 31000, 8081 - 31000, 8443 - 31000),
)


def free_port_base() -> int:
    """A port base whose every port is free right now (so tests never fight a dev's `up`)
    and outside the kernel's ephemeral port range: there, any outgoing connection (an
    agent's to its server, a client's to a workload) may hold the very port a component
    binds a moment later, and that component fails with "address already in use"."""
    low, high = _ephemeral_ports()
    first, last = min(_PORT_OFFSETS), max(_PORT_OFFSETS)
    bases = [
        base
        for base in range(1024 - first, 65536 - last, 100)
        if all(not low <= base + off <= high for off in _PORT_OFFSETS)
    ]
    # A random start keeps two test runs on one machine from racing for the same ports.
    start = random.randrange(len(bases))
    for base in bases[start:] + bases[:start]:
        ports = [base + off for off in _PORT_OFFSETS]
        if all(_free(p) for p in ports):
            return base
    raise RuntimeError(f"no free port base outside the ephemeral range {low}-{high}")


def _ephemeral_ports() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def _free(port: int) -> bool:
    if port < 1024:
        return False
    # A listener on another loopback address (the downstream server binds 127.0.0.2) does
    # not stop a bind on 127.0.0.1, but it is another deployment's port all the same.
    if is_listening(port):
        return False
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Deploy:
    """Runs `python -m spire_fabric.deploy` like a user would, against one state dir."""

    state_dir: Path
    port_base: int

    def run(
        self, *args: str, check: bool = False, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            sys.executable,
            "-m",
            "spire_fabric.deploy",
            *args,
            "--state-dir",
            str(self.state_dir),
        ]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"`deploy {' '.join(args)}` exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def up(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("up", "--port-base", str(self.port_base), *extra, check=check)

    def verify(self) -> Report:
        return verify_deployment(self.deployment())

    def verify_json(self) -> dict:
        return json.loads(self.run("verify", "--output", "json").stdout)

    def deployment(self) -> LocalDeployment:
        return LocalDeployment.open(self.state_dir)


@pytest.fixture(scope="module")
def enterprise() -> Iterator[Deploy]:
    deploy = Deploy(short_tempdir("sf-e2e-") / "state", free_port_base())
    try:
        deploy.up()
        yield deploy
    finally:
        deploy.run("down", "--purge")
