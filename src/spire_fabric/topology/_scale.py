"""The ``scale`` preset's parameters: a topology generated for size, spelled in one
``--topology`` value (the builder is ``_presets.scale``).

    scale                                   # 20 agents, 200 workloads, 5 running
    scale:agents=20,workloads=200,running=5,entries=50000

Why a parameterised preset and not a YAML generator: ``--topology`` already takes a preset
name everywhere (plan, up, verify, benchmarks, tests), so the parameters ride on the name
and nothing else learns a new option. The topology is one trust domain, one server and
``agents`` agents; ``workloads`` workloads are spread round-robin over the agents, and the
first ``running`` of them (one per agent first) run a small real workload (the API example
admitting only itself) that fetches its SVID and answers verify's health call. The others,
and the ``entries`` extra registrations, are registrations only: no process of theirs
runs. Locally every entry's selector is the user's uid (as in every preset), so each agent
really mints an SVID for each of its entries and `verify` proves each one; a running
workload picks its own by ``SPIFFE_ID``. Keep ``entries`` for `plan` and `entries apply`:
an `up` with 50k entries asks each agent to mint thousands of SVIDs. It is local-only: on
Kubernetes, scale is the controller manager's entries per pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["FIRST_WORKLOAD_PORT", "TRUST_DOMAIN", "ScaleParameters", "parse_scale"]

TRUST_DOMAIN = "scale.example.org"
FIRST_WORKLOAD_PORT = 30443
# agents' health ports run from 8180 upwards and must stay below the server's 8443 etc.;
# running workloads' ports from 30443 upwards. These bounds keep every port distinct.
_MAX_AGENTS = 200
_MAX_RUNNING = 500
_MAX_REGISTRATIONS = 1_000_000


@dataclass(frozen=True)
class ScaleParameters:
    """How big the ``scale`` topology is; every count is checked by :func:`parse_scale`."""

    agents: int = 20
    workloads: int = 200
    running: int = 5
    entries: int = 0


_BOUNDS: Mapping[str, tuple[int, int]] = {
    "agents": (1, _MAX_AGENTS),
    "workloads": (0, _MAX_REGISTRATIONS),
    "running": (0, _MAX_RUNNING),
    "entries": (0, _MAX_REGISTRATIONS),
}


def parse_scale(spec: str) -> ScaleParameters:
    """``agents=20,workloads=200,running=5,entries=0`` (any subset, any order) as
    parameters; a ValueError names the parameter that is wrong and why."""
    values: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if key not in _BOUNDS:
            raise ValueError(f"scale: unknown parameter {key!r}; known: {', '.join(_BOUNDS)}")
        if not sep or not raw.strip().isdigit():
            raise ValueError(f"scale: {key} must be a whole number, as {key}=20; got {item!r}")
        if key in values:
            raise ValueError(f"scale: {key} is given twice")
        value = int(raw)
        low, high = _BOUNDS[key]
        if not low <= value <= high:
            raise ValueError(f"scale: {key}={value} is outside {low}..{high}")
        values[key] = value
    if "running" not in values:  # the default, but never more than there are workloads
        values["running"] = min(ScaleParameters.running, values.get("workloads", 200))
    params = ScaleParameters(**values)
    if params.running > params.workloads:
        raise ValueError(
            f"scale: running={params.running} exceeds workloads={params.workloads}; "
            "only workloads can run"
        )
    return params
