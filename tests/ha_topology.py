"""A highly available topology for the tests: the enterprise preset with its downstream
server at 2 replicas with memory keys on Kubernetes, the layout docs/high-availability.md
describes. The preset is that layout; this builds it explicitly (with a choice of key
manager) so the tests say what they rely on."""

from __future__ import annotations

import dataclasses

from spire_fabric.topology import Topology, preset, validate_topology

HA_SERVER = "spire-downstream-server"


def enterprise_ha(key_manager: str = "memory", replicas: int = 2) -> Topology:
    """``enterprise`` with ``spire-downstream-server`` at ``replicas`` on Kubernetes (1 with
    ``key_manager="disk"`` is the layout before the preset became highly available)."""
    t = preset("enterprise")
    servers = []
    for s in t.servers:
        if s.name == HA_SERVER:
            assert s.kubernetes is not None
            k = dataclasses.replace(s.kubernetes, replicas=replicas, key_manager=key_manager)
            s = dataclasses.replace(s, kubernetes=k)
        servers.append(s)
    return validate_topology(dataclasses.replace(t, servers=tuple(servers)))
