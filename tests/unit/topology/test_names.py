"""Every name that becomes a directory or a Kubernetes object name is checked before
anything is written: hostile names in, a message naming the field and the rule out."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from spire_fabric.deploy.cli import main
from spire_fabric.topology import (
    PRESET_NAMES,
    IntermediateCa,
    MySqlDatastore,
    MySqlInstance,
    RootCa,
    Topology,
    TopologyBuilder,
    TopologyError,
    dump_topology,
    load_topology,
    preset,
    validate_topology,
)

EVIL = "../../../evil-agent"
LABEL_RULE = (
    "is not a DNS-1123 label (lowercase letters, digits and '-', starting and ending with "
    "a letter or digit, at most 63 characters)"
)


def problems(topology: Topology) -> list[str]:
    with pytest.raises(TopologyError) as info:
        validate_topology(topology)
    return [str(p) for p in info.value.problems]


def at(topology: Topology, path: str) -> str:
    """The one problem reported at exactly ``path``."""
    found = problems(topology)
    hits = [p for p in found if p.partition(": ")[0] == path]
    assert len(hits) == 1, f"expected one problem at {path}; got {found}"
    return hits[0]


def basic() -> Topology:
    return preset("basic")


def rename_agent(t: Topology, new: str) -> Topology:
    """Rename the single agent of ``t`` and every workload pointing at it, so the name is
    the only thing wrong."""
    old = t.agents[0].name
    agent = dataclasses.replace(t.agents[0], name=new)
    workloads = tuple(
        dataclasses.replace(w, agent=new) if w.agent == old else w for w in t.workloads
    )
    return dataclasses.replace(t, agents=(agent,), workloads=workloads)


def rename_workload(t: Topology, new: str) -> Topology:
    return dataclasses.replace(t, workloads=(dataclasses.replace(t.workloads[0], name=new),))


# --- the presets -------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_still_validates(name):
    assert validate_topology(preset(name)).name == preset(name).name


# --- names used as directories -----------------------------------------------------------


def test_topology_name_with_dot_dot_is_refused():
    msg = at(dataclasses.replace(basic(), name="../../x"), "name")
    assert f"'../../x' {LABEL_RULE}" in msg
    assert "used as a directory" in msg


def test_agent_name_escaping_the_state_root_is_refused():
    msg = at(rename_agent(basic(), EVIL), f"agents[{EVIL}].name")
    assert msg == (
        f"agents[{EVIL}].name: '{EVIL}' {LABEL_RULE}; "
        "it is used as a directory and Kubernetes object name"
    )


def test_uppercase_server_name_is_refused():
    t = basic()
    server = dataclasses.replace(t.servers[0], name="Spire-Server")
    agent = dataclasses.replace(t.agents[0], server="Spire-Server")
    t = dataclasses.replace(t, servers=(server,), agents=(agent,))
    assert LABEL_RULE in at(t, "servers[Spire-Server].name")


def test_name_of_64_characters_is_refused_and_63_is_fine():
    validate_topology(rename_workload(basic(), "w" * 63))
    long = "w" * 64
    assert LABEL_RULE in at(rename_workload(basic(), long), f"workloads[{long}].name")


def test_leading_dash_is_refused():
    assert LABEL_RULE in at(rename_agent(basic(), "-agent"), "agents[-agent].name")


def test_trailing_dash_is_refused():
    assert LABEL_RULE in at(rename_agent(basic(), "agent-"), "agents[agent-].name")


def test_slash_in_workload_name_is_refused():
    assert LABEL_RULE in at(rename_workload(basic(), "apps/x"), "workloads[apps/x].name")


def test_non_ascii_name_is_refused():
    assert LABEL_RULE in at(rename_workload(basic(), "äpp"), "workloads[äpp].name")


def test_cluster_name_is_checked():
    t = preset("basic")
    c = dataclasses.replace(t.clusters[0], name="Spire_Cluster")
    msg = at(dataclasses.replace(t, clusters=(c,)), "clusters[Spire_Cluster].name")
    assert LABEL_RULE in msg


def test_ca_names_are_checked():
    t = preset("enterprise")
    assert t.ca is not None
    root = dataclasses.replace(t.ca.root, name="../root")
    assert LABEL_RULE in at(
        dataclasses.replace(t, ca=dataclasses.replace(t.ca, root=root)), "ca.root.name"
    )
    inter = t.ca.intermediates[0]
    bad = dataclasses.replace(inter, name="Inter.CA")
    t2 = dataclasses.replace(
        t, ca=dataclasses.replace(t.ca, intermediates=(bad, *t.ca.intermediates[1:]))
    )
    assert LABEL_RULE in " ".join(p for p in problems(t2) if p.startswith("ca.intermediates"))
    assert any(p.startswith("ca.intermediates[Inter.CA].name:") for p in problems(t2))


def test_sound_ca_names_pass():
    t = (
        TopologyBuilder("t")
        .trust_domain("a.org")
        .server("srv-a", "a.org")
        .ca(RootCa(name="root-1"), [IntermediateCa("int-a", "a.org", "Int A")])
        .build()
    )
    assert t.ca is not None and t.ca.root.name == "root-1"


# --- Kubernetes names ---------------------------------------------------------------------


def test_namespace_with_underscore_is_refused_in_cluster_and_placement():
    t = basic()
    c = dataclasses.replace(t.clusters[0], namespaces=("spire", "spire-agents", "my_apps"))
    wk = dataclasses.replace(t.workloads[0].kubernetes, namespace="my_apps")
    w = dataclasses.replace(t.workloads[0], kubernetes=wk)
    found = problems(dataclasses.replace(t, clusters=(c,), workloads=(w,)))
    for path in (
        "clusters[spire-cluster].namespaces[2]",
        "workloads[example-app].kubernetes.namespace",
    ):
        hits = [p for p in found if p.startswith(f"{path}: ")]
        assert hits, f"nothing at {path}: {found}"
        assert f"'my_apps' {LABEL_RULE}; Kubernetes namespace names must be one" in hits[0]


def test_server_and_agent_namespaces_are_checked():
    t = basic()
    sk = dataclasses.replace(t.servers[0].kubernetes, namespace="Spire")
    ak = dataclasses.replace(t.agents[0].kubernetes, namespace="agents.x")
    t = dataclasses.replace(
        t,
        servers=(dataclasses.replace(t.servers[0], kubernetes=sk),),
        agents=(dataclasses.replace(t.agents[0], kubernetes=ak),),
    )
    found = problems(t)
    assert any(
        p.startswith("servers[spire-server].kubernetes.namespace: 'Spire' is not a DNS-1123 label")
        for p in found
    ), found
    assert any(
        p.startswith("agents[spire-agent].kubernetes.namespace: 'agents.x' is not a DNS-1123")
        for p in found
    ), found


def test_service_accounts_are_dns_subdomains():
    t = basic()
    # a dot is fine in a ServiceAccount name (a subdomain), an underscore is not
    wk = dataclasses.replace(t.workloads[0].kubernetes, service_account="example.app")
    ok = dataclasses.replace(t, workloads=(dataclasses.replace(t.workloads[0], kubernetes=wk),))
    validate_topology(ok)
    ak = dataclasses.replace(t.agents[0].kubernetes, service_account="spire_agent")
    bad = dataclasses.replace(t, agents=(dataclasses.replace(t.agents[0], kubernetes=ak),))
    msg = at(bad, "agents[spire-agent].kubernetes.service_account")
    assert "'spire_agent' is not a DNS-1123 subdomain" in msg
    assert "Kubernetes ServiceAccount names must be one" in msg


def test_bundle_configmap_is_a_dns_subdomain():
    t = basic()
    sk = dataclasses.replace(t.servers[0].kubernetes, bundle_configmap="Spire-Bundle")
    t = dataclasses.replace(t, servers=(dataclasses.replace(t.servers[0], kubernetes=sk),))
    msg = at(t, "servers[spire-server].kubernetes.bundle_configmap")
    assert "is not a DNS-1123 subdomain" in msg and "ConfigMap" in msg


def _with_mysql(t: Topology, instance: MySqlInstance) -> Topology:
    ds = MySqlDatastore(dsn="spire:x@tcp(db:3306)/spire?parseTime=true", instance=instance)
    sk = dataclasses.replace(t.servers[0].kubernetes, datastore=ds)
    return dataclasses.replace(t, servers=(dataclasses.replace(t.servers[0], kubernetes=sk),))


def test_mysql_service_is_a_dns_1035_label():
    validate_topology(_with_mysql(basic(), MySqlInstance(service="spire-db")))
    msg = at(
        _with_mysql(basic(), MySqlInstance(service="1db")),
        "servers[spire-server].kubernetes.datastore.instance.service",
    )
    assert "'1db' is not a DNS-1035 label" in msg and "starting with a letter" in msg


def test_mysql_password_secret_is_a_dns_subdomain():
    msg = at(
        _with_mysql(basic(), MySqlInstance(service="spire-db", password_secret="db_pass")),
        "servers[spire-server].kubernetes.datastore.instance.password_secret",
    )
    assert "'db_pass' is not a DNS-1123 subdomain" in msg and "Secret" in msg


# --- a topology needs a server -------------------------------------------------------------


def test_topology_without_servers_is_an_error():
    t = Topology(name="empty")
    assert at(t, "servers") == "servers: a topology needs at least one server"


def test_yaml_with_only_a_name_is_an_error():
    with pytest.raises(TopologyError) as info:
        load_topology("name: empty\n")
    assert "servers: a topology needs at least one server" in str(info.value)


# --- through load_topology and the CLI: refused before anything is written -------------------


def _evil_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "evil.yaml"
    path.write_text(dump_topology(rename_agent(basic(), EVIL)), encoding="utf-8")
    return path


def test_load_topology_refuses_a_hostile_agent_name(tmp_path):
    with pytest.raises(TopologyError) as info:
        load_topology(_evil_yaml(tmp_path))
    assert f"agents[{EVIL}].name: '{EVIL}' {LABEL_RULE}" in str(info.value)


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "argv",
    [
        ["plan"],
        ["plan", "--target", "kubernetes"],
        ["render", "-o", "out"],
        ["up"],
    ],
    ids=["plan", "plan-kubernetes", "render", "up"],
)
def test_cli_refuses_hostile_agent_name_and_writes_nothing(tmp_path, monkeypatch, capsys, argv):
    work = tmp_path / "work"
    home = tmp_path / "home"
    work.mkdir()
    home.mkdir()
    topology = _evil_yaml(work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    before = _files(tmp_path)

    code = main([argv[0], "--topology", str(topology), *argv[1:]])

    err = capsys.readouterr().err
    # plan keeps 2 for "there are changes" (terraform -detailed-exitcode): errors are 1
    assert code == (1 if argv[0] == "plan" else 2)
    assert f"agents[{EVIL}].name: '{EVIL}' {LABEL_RULE}" in err
    assert _files(tmp_path) == before
