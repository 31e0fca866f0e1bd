"""The network of the test clusters: each node's namespace and link, and the host's fence.

The fence: the host forwards between our node links only (any two, of either cluster);
everything else a node or pod sends to be forwarded is dropped, and the host itself rejects
our ranges on any interface that is not ours. Untranslated service addresses are rejected
in each node. Every rule carries our comment (`COMMENT`), so teardown and `leftovers` find
exactly ours.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

from kube_harness._host import State, sh
from kube_harness._plan import (
    COMMENT,
    OUTSIDE_RANGE,
    SERVICE_RANGE,
    ClusterSpec,
    KubeClusterError,
    NodeSpec,
)


def node_network(n: NodeSpec, state: State) -> None:
    """The node's namespace, its veth link to the host, and its routes.

    The node routes everything via the host; the host routes the node's pod subnet
    through the node's link, so a pod on one node reaches a pod on another node of its
    cluster by address, through the host (the fence lets forwarding between our links
    through).
    """
    c = n.cluster
    sh("ip", "netns", "add", n.netns)
    state.add("netns", n.netns)
    sh("ip", "link", "add", n.host_veth, "type", "veth", "peer", "name", n.peer_veth)
    state.add("links", n.host_veth)
    sh("ip", "link", "set", n.peer_veth, "netns", n.netns)
    sh("ip", "link", "set", n.peer_veth, "name", "eth0", netns=n.netns)
    sh("ip", "addr", "add", f"{n.host_ip}/30", "dev", n.host_veth)
    sh("ip", "link", "set", n.host_veth, "up")
    sh("ip", "addr", "add", f"{n.node_ip}/30", "dev", "eth0", netns=n.netns)
    sh("ip", "link", "set", "eth0", "up", netns=n.netns)
    sh("ip", "link", "set", "lo", "up", netns=n.netns)
    sh("ip", "route", "add", "default", "via", n.host_ip, netns=n.netns)
    routes = [n.pod_cidr]
    if n.k == 1:
        # Host processes (the API server calling a webhook Service) reach services
        # through the first node, where kube-proxy translates them.
        routes.append(c.service_cidr)
    for cidr in routes:
        route = [cidr, "via", n.node_ip, "dev", n.host_veth]
        sh("ip", "route", "add", *route)
        state.add("routes", route)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=n.netns)
    with contextlib.suppress(KubeClusterError):
        sh("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", netns=n.netns)
    # Inside the node (gone with its namespace): a service address that kube-proxy did
    # not translate has nowhere to go but off the machine, so refuse it here.
    for chain in ("FORWARD", "OUTPUT"):
        sh("iptables", "-A", chain, "-d", c.service_cidr, "-m", "comment",
            "--comment", COMMENT, "-j", "REJECT", netns=n.netns)
    # Pod to pod inside the cluster keeps the pod's address (no NAT between pods, as
    # Kubernetes networking promises): the bridge plugin masquerades everything that
    # leaves the node's /26. Appended now, before the bridge plugin appends its per-pod
    # jumps and after kube-proxy prepends its own (which must still masquerade hairpin
    # service traffic).
    sh("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", c.pod_cidr, "-d", c.pod_cidr,
        "-m", "comment", "--comment", COMMENT, "-j", "ACCEPT", netns=n.netns)



def fence_rules(clusters: Sequence[ClusterSpec]) -> list[list[str]]:
    """The host's iptables rules, in order, without our comment (`host_network` adds it).

    The host forwards between our node links (any two nodes of either cluster: pod to pod
    across the nodes of one cluster, and a pod of one cluster to a NodePort of the other),
    and drops whatever else enters or leaves an `sfk-*` link to be forwarded (so nothing of
    ours is forwarded off the machine, and the fence test's `sfk-out0` stays outside).
    """
    links = [n.host_veth for c in clusters for n in c.node_specs]
    rules: list[list[str]] = [
        ["filter", "FORWARD", "-i", a, "-o", b, "-j", "ACCEPT"]
        for a in links for b in links if a != b
    ]
    rules += [
        ["filter", "FORWARD", "-i", "sfk-+", "-j", "DROP"],
        ["filter", "FORWARD", "-o", "sfk-+", "-j", "DROP"],
        # The host's own addresses in the range (API servers) are reached over `lo`.
        ["filter", "OUTPUT", "-d", OUTSIDE_RANGE, "-m", "addrtype", "!", "--dst-type",
         "LOCAL", "!", "-o", "sfk-+", "-j", "REJECT"],
        ["filter", "OUTPUT", "-d", SERVICE_RANGE, "!", "-o", "sfk-+", "-j", "REJECT"],
    ]
    return rules


def host_network(state: State, clusters: Sequence[ClusterSpec]) -> None:
    if "ip_forward" not in state.data["sysctl"]:
        state.data["sysctl"]["ip_forward"] = Path("/proc/sys/net/ipv4/ip_forward").read_text(
        ).strip()
        state.save()
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
    # Inserted in reverse so they end up first in this order.
    for rule in reversed(fence_rules(clusters)):
        table, chain, *spec = rule
        full = [*spec[:-2], "-m", "comment", "--comment", COMMENT, *spec[-2:]]
        sh("iptables", "-t", table, "-I", chain, "1", *full)
        state.add("iptables", [table, chain, *full])
