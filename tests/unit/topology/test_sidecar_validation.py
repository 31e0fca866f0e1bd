"""Sidecars: each bad field is refused by name; nothing is allowed by default; the
enterprise inventory's sidecar is what the issue asks (server mode, two callers only);
the placeholders and callers sidecars imply; YAML round trip; the local-only rule."""

from __future__ import annotations

import dataclasses

import pytest

from spire_fabric.runtime.local.localize import LocalizeError, LocalSettings, localize
from spire_fabric.topology import (
    Sidecar,
    Topology,
    TopologyError,
    dump_topology,
    load_topology,
    preset,
    validate_topology,
    workload_callers,
)

API = "enterprise-api"
DOWN = "spiffe://downstream.example.org/ns/downstream-workloads/sa"


def _with(name: str, *sidecars: Sidecar, topology: Topology | None = None) -> Topology:
    t = topology or preset("enterprise")
    w = dataclasses.replace(t.workload(name), sidecars=sidecars)
    return dataclasses.replace(t, workloads=tuple(w if x.name == name else x for x in t.workloads))


def _problems(t: Topology) -> list[str]:
    with pytest.raises(TopologyError) as info:
        validate_topology(t)
    return [str(p) for p in info.value.problems]


P = f"workloads[{API}].sidecars"


@pytest.mark.parametrize(("sidecar", "expected"), [
    (Sidecar("tls", "server", app_port=9000),
     f"{P}[tls].allow_ids: nothing is allowed by default"),
    (Sidecar("tls", "server", allow_ids=(f"{DOWN}/x",)),
     f"{P}[tls].app_port: a server sidecar forwards to the app's plain port"),
    (Sidecar("tls", "server", app_port=9000, allow_ids=("spiffe://UPPER/x",)),
     f"{P}[tls].allow_ids[0]: "),
    (Sidecar("tls", "server", app_port=9000, allow_trust_domains=("nowhere.org",)),
     f"{P}[tls].allow_trust_domains[0]: trust domain 'nowhere.org' is not declared"),
    (Sidecar("tls", "server", app_port=30443, allow_ids=(f"{DOWN}/x",)),
     f"{P}[tls].app_port: 30443 is already the workload's local port"),
    (Sidecar("tls", "server", app_port=9000, allow_ids=(f"{DOWN}/x",), target="inventory"),
     f"{P}[tls].target: not used by a server sidecar"),
    (Sidecar("out", "client", target="inventory"),
     f"{P}[out].listen_port: a client sidecar needs the plain local port"),
    (Sidecar("out", "client", listen_port=9001),
     f"{P}[out].target: a client sidecar dials a workload: name it"),
    (Sidecar("out", "client", listen_port=9001, target="nope"),
     f"{P}[out].target: unknown workload 'nope'"),
    (Sidecar("out", "client", listen_port=9001, target=API),
     f"{P}[out].target: a workload does not dial itself"),
    (Sidecar("out", "client", listen_port=9001, target="data-processor"),
     f"{P}[out].target: workload 'data-processor' serves no port"),
    (Sidecar("svid", "files", signal="HUP"),
     f"{P}[svid].pid_file: signal and pid_file go together"),
    (Sidecar("svid", "files", signal="NOPE", pid_file="app.pid"),
     f"{P}[svid].signal: 'NOPE' is not a signal name"),
    (Sidecar("svid", "files", signal="HUP", pid_file="../app.pid"),
     f"{P}[svid].pid_file: '../app.pid' must be a path inside"),
    (Sidecar("svid", "files", app_port=9000),
     f"{P}[svid].app_port: not used by a files sidecar"),
    (Sidecar("Bad_Name", "files"), f"{P}[Bad_Name].name: 'Bad_Name' is not a DNS-1123 label"),
    (Sidecar(API, "files"), f"{P}[{API}].name: '{API}' is the app container's name"),
    (Sidecar("x", "proxy"), f"{P}[x].mode: 'proxy' is not one of server, client, files"),  # type: ignore[arg-type]
    (Sidecar("svid", "files", status_port=70000),
     f"{P}[svid].status_port: 70000 is not a TCP port"),
])  # fmt: skip
def test_a_bad_sidecar_field_is_refused_by_name(sidecar: Sidecar, expected: str) -> None:
    problems = _problems(_with(API, sidecar))
    assert any(p.startswith(expected) for p in problems), problems


def test_two_sidecars_of_one_workload_need_two_names_and_two_ports() -> None:
    a = Sidecar("svid", "files", status_port=9100)
    b = Sidecar("svid", "files", status_port=9100)
    problems = _problems(_with(API, a, b))
    assert any(p.startswith(f"{P}[svid].name: 'svid' is used by another sidecar") for p in problems)
    assert any(p.startswith(f"{P}[svid].status_port: 9100 is already svid's status_port")
               for p in problems), problems  # fmt: skip


def test_svid_placeholder_needs_a_files_sidecar() -> None:
    t = preset("enterprise")
    w = t.workload(API)
    assert w.run is not None
    run = dataclasses.replace(w.run, args=(*w.run.args, "--tls-dir", "{svid}"))
    bad = _with(API, topology=dataclasses.replace(t, workloads=tuple(
        dataclasses.replace(x, run=run) if x.name == API else x for x in t.workloads)))
    assert any("{svid}: only a workload with a files-mode sidecar" in p for p in _problems(bad))
    validate_topology(_with(API, Sidecar("svid", "files"), topology=bad))  # then it is fine


def test_enterprise_inventory_admits_only_the_api_and_the_gateway() -> None:
    t = preset("enterprise")
    inv = t.workload("inventory")
    (tls,) = inv.sidecars
    assert tls.mode == "server" and tls.allow_trust_domains == ()
    assert tls.allow_ids == (f"{DOWN}/enterprise-api", f"{DOWN}/security-gateway")
    # the network admits exactly who the sidecar admits
    assert [w.name for w in workload_callers(t, inv)] == ["enterprise-api", "security-gateway"]
    # a client sidecar's target is dialled: api-poller calls enterprise-api
    assert "api-poller" in [w.name for w in workload_callers(t, t.workload("enterprise-api"))]


def test_sidecars_round_trip_through_yaml() -> None:
    t = preset("enterprise")
    again = load_topology(dump_topology(t))
    assert again.workload("inventory").sidecars == t.workload("inventory").sidecars


def test_locally_a_ghostunnel_sidecar_needs_an_agent_of_its_own() -> None:
    t = preset("enterprise")
    inv = dataclasses.replace(t.workload("inventory"), agent="downstream-agent-1")
    shared = dataclasses.replace(t, workloads=tuple(
        inv if w.name == "inventory" else w for w in t.workloads))
    validate_topology(shared)  # fine on Kubernetes, where k8s selectors tell them apart
    with pytest.raises(LocalizeError, match=r"workloads\[inventory\]\.agent: "
                       r"'downstream-agent-1' also serves enterprise-api"):
        localize(shared, LocalSettings())


def test_local_sidecar_ports_move_with_the_port_base() -> None:
    local = localize(preset("enterprise"), LocalSettings(port_base=32000))
    (tls,) = local.workload("inventory").sidecars
    assert (tls.app_port, tls.status_port) == (31446, 31447)
