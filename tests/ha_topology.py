"""A highly available topology for the tests: the enterprise preset with its downstream
server at 2 replicas with memory keys on Kubernetes, the layout docs/high-availability.md
describes. The preset itself keeps one replica until the failover drills of issue 23 run
on the clusters."""

from __future__ import annotations

import dataclasses

from spire_fabric.topology import Topology, preset, validate_topology

HA_SERVER = "spire-downstream-server"


def enterprise_ha(key_manager: str = "memory") -> Topology:
    """``enterprise`` with ``spire-downstream-server`` at 2 replicas on Kubernetes."""
    t = preset("enterprise")
    servers = []
    for s in t.servers:
        if s.name == HA_SERVER:
            assert s.kubernetes is not None
            k = dataclasses.replace(s.kubernetes, replicas=2, key_manager=key_manager)
            s = dataclasses.replace(s, kubernetes=k)
        servers.append(s)
    return validate_topology(dataclasses.replace(t, servers=tuple(servers)))
