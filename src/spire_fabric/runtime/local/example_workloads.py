"""The example workloads as supervised processes of a local deployment.

Why here and not in the topology: the examples are demo programs that live in the source
checkout (`examples/`), not in the installed package. When they are there, `up` runs the
ones whose names match workloads of the topology, each with `SPIFFE_ENDPOINT_SOCKET` set
to its own agent's socket; when they are not (a wheel install), the workloads are only
registered and the verifier proves their identities through the agents ("probe" mode).

Local ports: a workload with a NodePort listens on it (security-gateway: 30080); the API
listens on 30443; both move with `--port-base` like every other local port.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from spire_fabric.runtime.local.localize import DEFAULT_PORT_BASE
from spire_fabric.runtime.local.supervisor import Component
from spire_fabric.topology import Topology, Workload

__all__ = ["ExampleProcess", "example_processes", "examples_dir"]

API_LOCAL_PORT = 30443
NAMES = ("enterprise-api", "data-processor", "security-gateway")


def examples_dir() -> Path | None:
    """`examples/` of the source checkout this package runs from, if there is one."""
    candidate = Path(__file__).resolve().parents[4] / "examples"
    return candidate if (candidate / "enterprise_api" / "__main__.py").exists() else None


@dataclass(frozen=True)
class ExampleProcess:
    workload: Workload
    component: Component
    port: int | None  # where it listens, if it serves


def example_processes(
    topology: Topology,
    agent_socket: dict[str, str],
    log_dir: Path,
    port_base: int,
) -> list[ExampleProcess]:
    """Processes for the example workloads present in `topology` (none without a checkout).

    `topology` is the localized one; `agent_socket` maps agent name to its socket path.
    """
    root = examples_dir()
    if root is None:
        return []
    by_name = {w.name: w for w in topology.workloads}
    if "enterprise-api" not in by_name:
        return []
    offset = port_base - DEFAULT_PORT_BASE
    api = by_name["enterprise-api"]
    api_port = API_LOCAL_PORT + offset
    api_url = f"https://127.0.0.1:{api_port}"
    callers = [by_name[n].spiffe_id for n in ("data-processor", "security-gateway") if n in by_name]

    def make(w: Workload, module: str, args: list[str], port: int | None) -> ExampleProcess:
        return ExampleProcess(
            workload=w,
            component=Component(
                name=f"workload:{w.name}",
                argv=(sys.executable, "-m", f"examples.{module}", *args),
                log_path=str(log_dir / f"{w.name}.log"),
                env={"SPIFFE_ENDPOINT_SOCKET": f"unix://{agent_socket[w.agent]}"},
                cwd=str(root.parent),
            ),
            port=port,
        )

    procs = [
        make(
            api,
            "enterprise_api",
            ["--listen", f"127.0.0.1:{api_port}", "--jwt-audience", api.spiffe_id]
            + [a for c in callers for a in ("--allow", c)],
            api_port,
        )
    ]
    if "data-processor" in by_name:
        procs.append(
            make(
                by_name["data-processor"],
                "data_processor",
                ["--api", api_url, "--api-id", api.spiffe_id, "--interval", "5"],
                None,
            )
        )
    if "security-gateway" in by_name:
        gw = by_name["security-gateway"]
        node_port = gw.kubernetes.node_port if gw.kubernetes else None
        gw_port = (node_port or 30080) + offset
        federated = sorted(set(gw.federates_with))
        procs.append(
            make(
                gw,
                "security_gateway",
                ["--listen", f"127.0.0.1:{gw_port}", "--upstream", api_url,
                 "--upstream-id", api.spiffe_id]
                + [a for td in federated for a in ("--allow-trust-domain", td)],
                gw_port,
            )
        )  # fmt: skip
    return procs
