"""Server replicas in the model: a shared SQL datastore, keys per replica, where they run."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from ha_topology import enterprise_ha

from spire_fabric.render import RenderPaths, render_server_config
from spire_fabric.render.kubernetes import render_kubernetes_objects
from spire_fabric.runtime.local.localize import LocalizeError, LocalSettings, localize
from spire_fabric.topology import (
    DiskUpstreamAuthority,
    MySqlDatastore,
    PostgresDatastore,
    Server,
    ServerKubernetes,
    Topology,
    TopologyError,
    dump_topology,
    load_topology,
    preset,
    server_key_manager,
    server_replicas,
    validate_topology,
)

DOWN = "spire-downstream-server"
UP = "spire-upstream-server"
POSTGRES = PostgresDatastore("dbname=spire host=db.example")


def problems(t: Topology) -> list[str]:
    with pytest.raises(TopologyError) as info:
        validate_topology(t)
    return [str(p) for p in info.value.problems]


def with_server(t: Topology, name: str, **changes: object) -> Topology:
    servers = tuple(dataclasses.replace(s, **changes) if s.name == name else s for s in t.servers)
    return dataclasses.replace(t, servers=servers)


def with_kubernetes(t: Topology, name: str, **changes: object) -> Topology:
    k = t.server(name).kubernetes
    assert k is not None
    return with_server(t, name, kubernetes=dataclasses.replace(k, **changes))


def test_a_server_has_one_replica_unless_asked():
    s = Server("s", "a.org")  # type: ignore[arg-type]
    assert s.replicas == 1
    assert server_replicas(s, "local") == server_replicas(s, "kubernetes") == 1


def test_the_enterprise_preset_is_the_ha_layout():
    """Issue 23: 2 downstream replicas on Kubernetes, the upstream's single-node cluster 1."""
    t = preset("enterprise")
    assert [(s.name, server_replicas(s, "kubernetes")) for s in t.servers] == [
        (UP, 1),
        (DOWN, 2),
    ]
    assert t == enterprise_ha()


def test_the_ha_layout_runs_two_downstream_replicas_on_kubernetes_only():
    t = enterprise_ha()
    down, up = t.server(DOWN), t.server(UP)
    assert (server_replicas(down, "kubernetes"), server_replicas(down, "local")) == (2, 1)
    assert server_replicas(up, "kubernetes") == 1
    # memory keys where the regional intermediate signs the CA; disk locally
    assert isinstance(down.upstream_authority, DiskUpstreamAuthority)
    assert (server_key_manager(down, "kubernetes"), server_key_manager(down, "local")) == (
        "memory",
        "disk",
    )


def test_replicas_on_sqlite_are_refused_naming_the_replicas_and_datastore_fields():
    t = with_kubernetes(enterprise_ha(), DOWN, datastore=None)
    msgs = [p for p in problems(t) if p.startswith(f"servers[{DOWN}].kubernetes.replicas")]
    assert len(msgs) == 1, problems(t)
    assert "shared SQL datastore" in msgs[0]
    assert f"servers[{DOWN}].datastore" in msgs[0]


def test_top_level_replicas_on_sqlite_are_refused_at_servers_replicas():
    t = with_server(preset("basic"), preset("basic").servers[0].name, replicas=3)
    name = t.servers[0].name
    msgs = [p for p in problems(t) if p.startswith(f"servers[{name}].replicas")]
    assert msgs and "3 replicas need a shared SQL datastore" in msgs[0]


@pytest.mark.parametrize("datastore", [POSTGRES, MySqlDatastore("u@tcp(db)/s?parseTime=true")])
def test_replicas_on_a_network_sql_datastore_are_sound(datastore):
    t = with_server(preset("basic"), preset("basic").servers[0].name, replicas=3,
                    datastore=datastore)  # fmt: skip
    validate_topology(t)


@pytest.mark.parametrize("count", [0, -1])
def test_a_replica_count_below_one_is_refused(count):
    t = with_kubernetes(enterprise_ha(), DOWN, replicas=count)
    msgs = [p for p in problems(t) if p.startswith(f"servers[{DOWN}].kubernetes.replicas")]
    assert msgs and f"{count} is not a replica count" in msgs[0]


def test_memory_keys_with_replicas_and_a_self_signed_ca_are_refused():
    name = preset("basic").servers[0].name
    t = with_server(preset("basic"), name, replicas=2, datastore=POSTGRES, key_manager="memory")
    assert t.server(name).upstream_authority is None
    msgs = [p for p in problems(t) if p.startswith(f"servers[{name}].key_manager")]
    assert msgs and "self-signed CA" in msgs[0] and "new root" in msgs[0]


def test_disk_keys_with_replicas_and_a_self_signed_ca_are_sound():
    name = preset("basic").servers[0].name
    validate_topology(with_server(preset("basic"), name, replicas=2, datastore=POSTGRES))


def test_memory_keys_under_an_upstream_authority_render_memory_on_kubernetes_only():
    t = enterprise_ha()
    k8s = render_server_config(t, DOWN, RenderPaths.kubernetes())
    local = render_server_config(t, DOWN, RenderPaths.local("/tmp/x"))
    assert 'KeyManager "memory"' in k8s and 'KeyManager "disk"' not in k8s
    assert 'KeyManager "disk"' in local and 'KeyManager "memory"' not in local


def test_replicas_round_trip_through_yaml():
    t = enterprise_ha()
    text = dump_topology(t)
    assert "replicas: 2" in text and "key_manager: memory" in text
    assert load_topology(text) == t


def test_local_target_refuses_replicas_and_points_to_kubernetes():
    name = preset("basic").servers[0].name
    t = with_server(preset("basic"), name, replicas=2, datastore=POSTGRES)
    with pytest.raises(LocalizeError) as info:
        localize(t, LocalSettings())
    assert f"servers[{name}].replicas is 2" in str(info.value)
    assert "--target kubernetes" in str(info.value)


def test_local_target_runs_the_ha_layout_with_one_downstream_process():
    local = localize(enterprise_ha(), LocalSettings())
    assert server_replicas(local.server(DOWN), "local") == 1


def _controller_manager_config(t: Topology, server: str) -> dict:
    name = f"{server}-controller-manager-config"
    cm = next(o for o in render_kubernetes_objects(t)
              if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name)  # fmt: skip
    return yaml.safe_load(cm["data"]["controller-manager-config.yaml"])


def test_controller_managers_of_replicas_elect_a_leader_on_a_lease():
    t = enterprise_ha()
    assert _controller_manager_config(t, DOWN)["leaderElection"] == {
        "leaderElect": True,
        "resourceLock": "leases",
        "resourceName": f"{DOWN}-controller-manager",
        "resourceNamespace": "spire-downstream",
    }
    assert _controller_manager_config(t, UP)["leaderElection"] == {"leaderElect": False}


def test_lease_rbac_exists_only_for_servers_with_replicas():
    objects = render_kubernetes_objects(enterprise_ha())
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objects if o["kind"] in ("Role", "RoleBinding")}  # fmt: skip
    name = f"spire-fabric-{DOWN}-controller-manager-leader"
    role = roles[("Role", "spire-downstream", name)]
    lease_rules = [r for r in role["rules"] if r["resources"] == ["leases"]]
    assert {tuple(r["verbs"]) for r in lease_rules} == {("create",), ("get", "update")}
    named = next(r for r in lease_rules if "resourceNames" in r)
    assert named["resourceNames"] == [f"{DOWN}-controller-manager"]
    binding = roles[("RoleBinding", "spire-downstream", name)]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "spire-server", "namespace": "spire-downstream"}
    ]
    assert not any("leader" in n for (_, _, n) in roles if UP in n)


def test_server_kubernetes_defaults_leave_replicas_to_the_server():
    k = ServerKubernetes(cluster="c", namespace="n")
    assert k.replicas is None and k.key_manager is None
