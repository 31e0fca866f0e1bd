"""What the manifests say: ports, RBAC, configs, images, determinism, CLI wiring."""

from __future__ import annotations

import dataclasses
import hashlib
import re

import pytest
import yaml

from spire_fabric._version import __version__
from spire_fabric.deploy.render import render_files
from spire_fabric.render import RenderPaths, render_agent_config, render_server_config
from spire_fabric.render.kubernetes import (
    DatastoreTlsPem,
    InstallerSecrets,
    SigningCaPem,
    cluster_of,
    identity_probe_pod,
    mysql_dns_names,
    mysql_secret,
    mysql_tls_secret,
    render_kubernetes_manifests,
    render_kubernetes_objects,
)
from spire_fabric.topology import PRESET_NAMES, kubernetes_view, preset

K8S = RenderPaths.kubernetes()


def _find(objects, kind, name, namespace=None):
    for o in objects:
        m = o["metadata"]
        if o["kind"] == kind and m["name"] == name and m.get("namespace") == namespace:
            return o
    raise AssertionError(f"no {kind} {namespace}/{name}")


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_rendering_is_byte_identical_on_repeat_with_sorted_paths(name):
    a = render_kubernetes_manifests(preset(name))
    b = render_kubernetes_manifests(preset(name))
    assert a == b
    assert list(a) == sorted(a)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_manifest_files_hold_exactly_the_objects_in_the_same_order(name):
    topology = preset(name)
    from_files = [
        doc
        for _, text in sorted(
            render_kubernetes_manifests(topology).items(),
            key=lambda kv: ([c.name for c in topology.clusters].index(kv[0].split("/")[0]), kv[0]),
        )
        for doc in yaml.safe_load_all(text)
    ]
    assert from_files == render_kubernetes_objects(topology)


def test_enterprise_exposes_the_design_node_ports_that_something_uses():
    text = "".join(render_kubernetes_manifests(preset("enterprise")).values())
    for port in (31443, 32443, 30080):
        assert f"nodePort: {port}\n" in text
    # the API NodePorts stay in the topology for an agent of another cluster; none here
    for port in (31081, 32081):
        assert f"nodePort: {port}\n" not in text
    objects = render_kubernetes_objects(preset("enterprise"))
    up = _find(objects, "Service", "spire-upstream-server", "spire-upstream")
    assert up["spec"]["type"] == "ClusterIP"
    assert [p["port"] for p in up["spec"]["ports"]] == [8081, 8443]
    published = _find(objects, "Service", "spire-upstream-server-nodeports", "spire-upstream")
    assert [(p["port"], p["nodePort"]) for p in published["spec"]["ports"]] == [(8443, 31443)]
    gw = _find(objects, "Service", "security-gateway", "downstream-workloads")
    assert gw["spec"]["type"] == "NodePort"
    assert gw["spec"]["ports"][0]["nodePort"] == 30080


def test_each_object_goes_to_the_cluster_its_file_names():
    for path, text in render_kubernetes_manifests(preset("enterprise")).items():
        for doc in yaml.safe_load_all(text):
            assert cluster_of(doc) == path.split("/")[0]


def test_crd_free_has_no_cluster_scoped_rbac_or_controller_manager():
    objects = render_kubernetes_objects(preset("crd-free"))
    kinds = {o["kind"] for o in objects}
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    assert "CustomResourceDefinition" not in kinds and "CSIDriver" not in kinds
    assert not [o for o in objects if o["apiVersion"].startswith("spire.spiffe.io/")]
    sts = _find(objects, "StatefulSet", "spire-server", "spire")
    assert [c["name"] for c in sts["spec"]["template"]["spec"]["containers"]] == ["spire-server"]
    role = _find(objects, "Role", "spire-fabric-spire-server-bundle-publisher", "spire-agents")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "verbs": ["get", "patch"],
            "resourceNames": ["spire-bundle"],
        }
    ]


def test_psat_server_gets_exactly_tokenreviews_create_and_pods_nodes_get():
    objects = render_kubernetes_objects(preset("enterprise"))
    role = _find(objects, "ClusterRole", "spire-fabric-spire-downstream-server-node-attestor")
    assert role["rules"] == [
        {
            "apiGroups": ["authentication.k8s.io"],
            "resources": ["tokenreviews"],
            "verbs": ["create"],
        },
        {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get"]},
    ]
    binding = _find(
        objects, "ClusterRoleBinding", "spire-fabric-spire-downstream-server-node-attestor"
    )
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "spire-server", "namespace": "spire-downstream"}
    ]


def test_k8s_workload_attestor_gets_only_kubelet_pod_listing():
    objects = render_kubernetes_objects(preset("enterprise"))
    name = "spire-fabric-spire-downstream-agents-spire-agent-workload-attestor"
    role = _find(objects, "ClusterRole", name)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes/pods"], "verbs": ["get"]}]
    binding = _find(objects, "ClusterRoleBinding", name)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "spire-agent", "namespace": "spire-downstream-agents"}
    ]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_rbac_subjects_and_psat_allow_list_name_the_agents_where_they_run(name):
    """Moving agents into their own namespace must move everything that names them."""
    topology = preset(name)
    objects = render_kubernetes_objects(topology)
    agents = {
        (o["metadata"]["namespace"], o["spec"]["template"]["spec"]["serviceAccountName"])
        for o in objects
        if o["kind"] == "DaemonSet"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == "agent"
    }
    for ns, sa in agents:
        _find(objects, "ServiceAccount", sa, ns)
    attestor_subjects = {
        (s["namespace"], s["name"])
        for o in objects
        if o["kind"] == "ClusterRoleBinding"
        and o["metadata"]["name"].endswith("-workload-attestor")
        for s in o["subjects"]
    }
    k8s_attesting = {
        (a.kubernetes.namespace, a.kubernetes.service_account)
        for a in topology.agents
        if "k8s" in a.workload_attestors
    }
    assert attestor_subjects == (k8s_attesting if topology.kubernetes.rbac == "cluster" else set())
    for s in topology.servers:
        conf = render_server_config(topology, s.name, K8S)
        allowed = set(re.findall(r"service_account_allow_list = \[([^\]]*)\]", conf))
        listed = {tuple(x.strip('" ').split(":")) for a in allowed for x in a.split(",") if x}
        psat_agents = {
            (a.kubernetes.namespace, a.kubernetes.service_account)
            for a in topology.agents_of(s.name)
            if a.kubernetes.node_attestor == "k8s_psat"
        }
        assert listed == psat_agents
        assert listed <= agents


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_bundle_configmaps_are_published_only_into_the_agents_namespaces(name):
    """Agents mount the bundle ConfigMap; the server may write it there and nowhere else."""
    topology = kubernetes_view(preset(name)).topology  # what the Kubernetes target runs
    objects = render_kubernetes_objects(topology)
    for s in topology.servers:
        k = s.kubernetes
        agent_ns = {a.kubernetes.namespace for a in topology.agents_of(s.name)}
        maps = {
            o["metadata"]["namespace"]
            for o in objects
            if o["kind"] == "ConfigMap"
            and o["metadata"]["name"] == k.bundle_configmap
            and cluster_of(o) == k.cluster
        }
        roles = {
            o["metadata"]["namespace"]
            for o in objects
            if o["kind"] == "Role"
            and o["metadata"]["name"] == f"spire-fabric-{s.name}-bundle-publisher"
        }
        assert maps == roles == agent_ns
        assert k.namespace not in agent_ns
        for ns in agent_ns:
            binding = _find(objects, "RoleBinding", f"spire-fabric-{s.name}-bundle-publisher", ns)
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": k.service_account, "namespace": k.namespace}
            ]
        for a in topology.agents_of(s.name):
            ds = _find(objects, "DaemonSet", a.name, a.kubernetes.namespace)
            volumes = ds["spec"]["template"]["spec"]["volumes"]
            bundle = next(v for v in volumes if v["name"] == "bundle")
            assert bundle["configMap"]["name"] == k.bundle_configmap


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_bundle_publisher_may_write_every_configmap_its_server_conf_names(name):
    topology = preset(name)
    objects = render_kubernetes_objects(topology)
    for s in topology.servers:
        conf = render_server_config(topology, s.name, K8S)
        block = conf[conf.index('BundlePublisher "k8s_configmap"') :]
        namespaces = set(re.findall(r'namespace\s*=\s*"([^"]+)"', block))
        assert namespaces
        for ns in namespaces:
            role = _find(objects, "Role", f"spire-fabric-{s.name}-bundle-publisher", ns)
            assert role["rules"][0]["resourceNames"] == [s.kubernetes.bundle_configmap]
            _find(objects, "ConfigMap", s.kubernetes.bundle_configmap, ns)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_config_maps_carry_the_hcl_renderers_output_verbatim(name):
    topology = kubernetes_view(preset(name)).topology  # what the Kubernetes target runs
    objects = render_kubernetes_objects(topology)
    for s in topology.servers:
        cm = _find(objects, "ConfigMap", f"{s.name}-config", s.kubernetes.namespace)
        assert cm["data"] == {"server.conf": render_server_config(topology, s.name, K8S)}
    for a in topology.agents:
        cm = _find(objects, "ConfigMap", f"{a.name}-config", a.kubernetes.namespace)
        assert cm["data"] == {"agent.conf": render_agent_config(topology, a.name, K8S)}


def test_mysql_backed_server_expands_the_password_from_the_mysql_secret():
    objects = render_kubernetes_objects(preset("enterprise"))
    sts = _find(objects, "StatefulSet", "spire-upstream-server", "spire-upstream")
    server = sts["spec"]["template"]["spec"]["containers"][0]
    assert "-expandEnv" in server["args"]
    assert server["env"] == [
        {
            "name": "SPIRE_DB_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "spire-mysql", "key": "password"}},
        }
    ]
    secret = _find(objects, "Secret", "spire-mysql", "spire-upstream")
    assert "data" not in secret  # never a password in a rendered file
    for kind in ("Deployment", "Service"):
        _find(objects, kind, "spire-upstream-mysql", "spire-upstream")
    _find(objects, "PersistentVolumeClaim", "spire-upstream-mysql-data", "spire-upstream")
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_sqlite_server_runs_without_expand_env():
    objects = render_kubernetes_objects(preset("basic"))
    sts = _find(objects, "StatefulSet", "spire-server", "spire")
    server = sts["spec"]["template"]["spec"]["containers"][0]
    assert "-expandEnv" not in server["args"] and "env" not in server


def _env_names_and_refs(objects):
    """(object, container, env var) for every env var of every container of every pod."""
    for o in objects:
        spec = o.get("spec", {})
        pod = spec.get("template", {}).get("spec") if "template" in spec else None
        pod = spec if o["kind"] == "Pod" else pod
        for c in (pod or {}).get("containers", []) + (pod or {}).get("initContainers", []):
            for e in c.get("env", []):
                yield o, c, e


def test_mysql_gets_its_passwords_as_files_of_a_read_only_secret_volume_never_env():
    objects = render_kubernetes_objects(preset("enterprise"))
    dep = _find(objects, "Deployment", "spire-upstream-mysql", "spire-upstream")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert not any("valueFrom" in e for e in env.values())
    assert "MYSQL_ROOT_PASSWORD" not in env and "MYSQL_PASSWORD" not in env
    # the official images' *_FILE convention (mysql and mariadb read both), and ours
    assert env["MYSQL_PASSWORD_FILE"]["value"] == "/run/secrets/mysql/password"
    assert env["MYSQL_ROOT_PASSWORD_FILE"]["value"] == "/run/secrets/mysql/root-password"
    mount = next(m for m in c["volumeMounts"] if m["name"] == "passwords")
    assert mount == {"name": "passwords", "mountPath": "/run/secrets/mysql", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "passwords")
    assert volume["secret"] == {"secretName": "spire-mysql", "defaultMode": 0o440}
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] == 999


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_no_password_or_token_in_any_env_or_argument(name):
    objects = render_kubernetes_objects(preset(name))
    for o, c, e in _env_names_and_refs(objects):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            assert "PASSWORD" not in e["name"] or e["name"].endswith("_FILE"), e
            continue
        # one exception: SPIRE reads its DSN only from server.conf or (-expandEnv) the
        # environment; it has no password file. Only the spire-server container has it.
        assert (c["name"], e["name"], ref["key"]) == ("spire-server", "SPIRE_DB_PASSWORD",
                                                        "password"), (o["metadata"], e)
    for o in objects:
        spec = o.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []):
            assert "-joinToken" not in c.get("args", []), o["metadata"]


def test_mysql_serves_tls_only_with_the_certificate_of_its_tls_secret():
    objects = render_kubernetes_objects(preset("enterprise"))
    dep = _find(objects, "Deployment", "spire-downstream-mysql", "spire-downstream")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["args"] == [
        "--ssl-cert=/run/secrets/mysql-tls/tls.crt",
        "--ssl-key=/run/secrets/mysql-tls/tls.key",
        "--ssl-ca=/run/secrets/mysql-tls/ca.crt",
        "--require-secure-transport=ON",
    ]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "tls")
    assert mount == {"name": "tls", "mountPath": "/run/secrets/mysql-tls", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert volume["secret"] == {"secretName": "spire-downstream-mysql-tls", "defaultMode": 0o440}
    secret = _find(objects, "Secret", "spire-downstream-mysql-tls", "spire-downstream")
    assert secret["type"] == "kubernetes.io/tls" and "data" not in secret


def test_spire_server_verifies_its_mysql_against_the_datastore_ca_alone():
    topology = preset("enterprise")
    objects = render_kubernetes_objects(topology)
    conf = render_server_config(topology, "spire-upstream-server", K8S)
    assert 'root_ca_path = "/run/spire/mysql-ca/ca.crt"' in conf
    # the DSN names the host the certificate is issued for (the driver checks it)
    host = "spire-upstream-mysql.spire-upstream.svc"
    assert f"@tcp({host}:3306)/" in conf
    assert mysql_dns_names(topology.server("spire-upstream-server"))[0] == host
    sts = _find(objects, "StatefulSet", "spire-upstream-server", "spire-upstream")
    pod = sts["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "mysql-ca")
    # only the CA certificate: MySQL's key stays in MySQL's pod
    assert volume["secret"] == {
        "secretName": "spire-upstream-mysql-tls",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
        "defaultMode": 0o440,
    }
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "mysql-ca")
    assert mount == {"name": "mysql-ca", "mountPath": "/run/spire/mysql-ca", "readOnly": True}
    # locally nothing changes: no MySQL of ours, no datastore CA
    assert "root_ca_path" not in render_server_config(
        topology, "spire-upstream-server", RenderPaths.local("/tmp/x")
    )


def test_mysql_tls_secret_with_values_and_the_digest_that_rolls_mysql():
    topology = preset("enterprise")
    server = topology.server("spire-upstream-server")
    s = mysql_tls_secret(topology, server, cert=b"C", key=b"K", ca=b"A")
    assert s["type"] == "kubernetes.io/tls"
    assert s["data"] == {"ca.crt": "QQ==", "tls.crt": "Qw==", "tls.key": "Sw=="}
    tls = {server.name: DatastoreTlsPem(b"C", b"K", b"A")}
    objects = render_kubernetes_objects(topology, InstallerSecrets(mysql_tls=tls))
    dep = _find(objects, "Deployment", "spire-upstream-mysql", "spire-upstream")
    digest = hashlib.sha256(b"C").hexdigest()[:16]
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann == {"spire-fabric.io/tls-cert-sha256": digest}
    assert _find(objects, "Secret", "spire-upstream-mysql-tls", "spire-upstream") == s


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_signing_ca_secret_is_typed_tls_with_tls_crt_and_key(name):
    topology = preset(name)
    pem = SigningCaPem(b"chain", b"key", b"root")
    cas = {s.name: pem for s in topology.servers}
    objects = render_kubernetes_objects(topology, InstallerSecrets(signing_cas=cas))
    secrets = [o for o in objects if o["kind"] == "Secret"
               and o["metadata"]["labels"]["app.kubernetes.io/component"] == "upstream-ca"]
    assert len(secrets) == (2 if name == "enterprise" else 0)
    for s in secrets:
        assert s["type"] == "kubernetes.io/tls"
        assert sorted(s["data"]) == ["bundle.crt", "tls.crt", "tls.key"]
        assert s["data"]["tls.key"] == "a2V5"
        ns = s["metadata"]["namespace"]
        sts = next(o for o in objects if o["kind"] == "StatefulSet"
                   and o["metadata"]["namespace"] == ns)
        conf = render_server_config(topology, sts["metadata"]["name"], K8S)
        # the server reads exactly those keys where the Secret volume is mounted
        mount = next(m for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
                     if m["name"] == "upstream-ca")
        for key in ("tls.crt", "tls.key", "bundle.crt"):
            assert f'"{mount["mountPath"]}/{key}"' in conf


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_no_workload_pod_or_probe_runs_in_a_server_namespace(name):
    topology = preset(name)
    objects = render_kubernetes_objects(topology)
    servers = {(cluster_of(o), o["metadata"]["namespace"]) for o in objects
               if o["kind"] == "StatefulSet"}  # fmt: skip
    assert servers
    placed = [(cluster_of(o), o["metadata"]["namespace"]) for o in objects
              if o["kind"] in ("Deployment", "ServiceAccount")
              and o["metadata"]["labels"].get("app.kubernetes.io/component") == "workload"]
    # the installer's identity probe runs as the workload, in its namespace, in its agent's
    # cluster (the probe pod carries no cluster label: the installer places it)
    placed += [(topology.agent(w.agent).kubernetes.cluster,
                identity_probe_pod(topology, w, "probe")["metadata"]["namespace"])
               for w in topology.workloads if w.kubernetes is not None]  # fmt: skip
    assert placed
    assert not set(placed) & servers, set(placed) & servers


def test_mysql_secret_with_values_carries_them_base64_encoded():
    topology = preset("enterprise")
    s = mysql_secret(
        topology, topology.server("spire-upstream-server"), password="pw", root_password="root"
    )
    assert s["data"] == {"password": "cHc=", "root-password": "cm9vdA=="}


def test_server_probes_hit_the_health_port_liveness_and_readiness_paths():
    """Readiness directly for one replica; for two with memory keys through the readiness
    gate, which asks the same /ready first (test_k8s_high_availability)."""
    objects = render_kubernetes_objects(preset("enterprise"))
    for name, ns, ready_port in (
        ("spire-upstream-server", "spire-upstream", "health"),
        ("spire-downstream-server", "spire-downstream", 8089),
    ):
        c = _find(objects, "StatefulSet", name, ns)["spec"]["template"]["spec"]["containers"][0]
        health = next(p["containerPort"] for p in c["ports"] if p["name"] == "health")
        assert health == 8080
        assert c["livenessProbe"]["httpGet"] == {"path": "/live", "port": "health"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": ready_port}


def test_psat_agents_mount_a_projected_token_for_the_spire_server_audience():
    objects = render_kubernetes_objects(preset("enterprise"))
    ds = _find(objects, "DaemonSet", "downstream-agent-1", "spire-downstream-agents")
    vol = next(v for v in ds["spec"]["template"]["spec"]["volumes"] if v["name"] == "psat-token")
    token = vol["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "spire-server" and token["path"] == "spire-agent"
    mount = next(
        m
        for m in ds["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        if m["name"] == "psat-token"
    )
    assert mount["mountPath"] == "/var/run/secrets/tokens"  # agent's default token_path dir


def test_join_token_agent_reads_its_token_from_a_secret_file_not_argv_env_or_agent_conf():
    objects = render_kubernetes_objects(preset("crd-free"))
    spec = _find(objects, "DaemonSet", "spire-agent", "spire-agents")["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["args"][-2:] == ["-joinTokenFile", "/run/spire/join-token/token"]
    assert "-joinToken" not in c["args"]
    assert not any("TOKEN" in e["name"] for e in c["env"])
    mount = next(m for m in c["volumeMounts"] if m["name"] == "join-token")
    assert mount == {"name": "join-token", "mountPath": "/run/spire/join-token", "readOnly": True}
    volume = next(v for v in spec["volumes"] if v["name"] == "join-token")
    assert volume["secret"] == {"secretName": "spire-agent-join-token", "defaultMode": 0o400}


def test_agents_of_one_server_in_one_cluster_are_kept_on_different_nodes():
    objects = render_kubernetes_objects(preset("enterprise"))
    selectors = [
        _find(objects, "DaemonSet", f"downstream-agent-{i}", "spire-downstream-agents")["spec"][
            "template"
        ]["spec"]["nodeSelector"]
        for i in (1, 2, 3)
    ]
    assert len({tuple(s) for s in selectors}) == 1  # one key: a node holds one value
    assert len({tuple(s.values()) for s in selectors}) == 3
    api = _find(objects, "Deployment", "enterprise-api", "downstream-workloads")
    assert api["spec"]["template"]["spec"]["nodeSelector"] == selectors[0]


def test_workloads_get_the_socket_from_their_agents_csi_driver():
    objects = render_kubernetes_objects(preset("enterprise"))
    d = _find(objects, "Deployment", "data-processor", "downstream-workloads")
    spec = d["spec"]["template"]["spec"]
    vol = next(v for v in spec["volumes"] if v["name"] == "spiffe-workload-api")
    assert vol["csi"]["driver"] == "downstream-agent-2.csi.spiffe.io"
    _find(objects, "CSIDriver", "downstream-agent-2.csi.spiffe.io")
    c = spec["containers"][0]
    # the command is the workload's run description, placeholders resolved for the cluster
    assert c["command"] == [
        "python", "-m", "spire_fabric.examples.data_processor",
        "--api", "https://enterprise-api.downstream-workloads.svc:8443",
        "--api-id", "spiffe://downstream.example.org/ns/downstream-workloads/sa/enterprise-api",
        "--interval", "5",
        # the pod's address: its cluster's Prometheus scrapes it (the only pod admitted)
        "--metrics-listen", "0.0.0.0:8382",
    ]  # fmt: skip
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["SPIFFE_ENDPOINT_SOCKET"] == "unix:///spiffe-workload-api/api.sock"


def test_cluster_spiffe_ids_register_the_design_workloads_federated_with_upstream():
    objects = render_kubernetes_objects(preset("enterprise"))
    for name in ("enterprise-api", "data-processor", "security-gateway"):
        spec = _find(objects, "ClusterSPIFFEID", name)["spec"]
        assert spec["spiffeIDTemplate"] == (
            f"spiffe://downstream.example.org/ns/downstream-workloads/sa/{name}"
        )
        assert spec["federatesWith"] == ["enterprise-root.org"]
        assert spec["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "downstream-workloads"}
        }
        assert spec["workloadSelectorTemplates"] == [f"k8s:sa:{name}"]
        assert spec["className"] == "spire-downstream-server"
    ftd = _find(
        objects, "ClusterFederatedTrustDomain", "spire-downstream-server-enterprise-root-org"
    )["spec"]
    assert ftd["bundleEndpointURL"] == "https://upstream-cluster-control-plane:31443"
    assert ftd["bundleEndpointProfile"] == {
        "type": "https_spiffe",
        "endpointSPIFFEID": "spiffe://enterprise-root.org/spire/server",
    }


def _config_federations(conf: str) -> set[str]:
    return set(re.findall(r'federates_with "([^"]+)"', conf))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_each_federation_relationship_is_configured_exactly_once(name):
    """A relationship lives either in a ClusterFederatedTrustDomain (controller manager) or
    in server.conf, never both: SPIRE lets the config copy silently win."""
    topology = preset(name)
    objects = render_kubernetes_objects(topology)
    for s in topology.servers:
        conf = _find(objects, "ConfigMap", f"{s.name}-config", s.kubernetes.namespace)["data"][
            "server.conf"
        ]
        crs = {
            o["spec"]["trustDomain"]
            for o in objects
            if o["kind"] == "ClusterFederatedTrustDomain" and o["spec"]["className"] == s.name
        }
        in_conf = _config_federations(conf)
        assert not crs & in_conf
        assert crs | in_conf == {str(f.trust_domain) for f in topology.federations_of(s.name)}


def test_enterprise_federation_is_owned_by_the_controller_manager_on_kubernetes():
    objects = render_kubernetes_objects(preset("enterprise"))
    conf = _find(objects, "ConfigMap", "spire-upstream-server-config", "spire-upstream")["data"][
        "server.conf"
    ]
    assert _config_federations(conf) == set()
    assert "bundle_endpoint {" in conf
    _find(objects, "ClusterFederatedTrustDomain", "spire-upstream-server-downstream-example-org")


def test_without_a_controller_manager_the_server_conf_carries_the_federation():
    t = preset("enterprise")
    t = dataclasses.replace(
        t,
        kubernetes=dataclasses.replace(t.kubernetes, registration="spire-api"),
        servers=tuple(
            dataclasses.replace(
                s, kubernetes=dataclasses.replace(s.kubernetes, controller_manager=False)
            )
            for s in t.servers
        ),
    )
    objects = render_kubernetes_objects(t)
    assert not [o for o in objects if o["kind"] == "ClusterFederatedTrustDomain"]
    conf = _find(objects, "ConfigMap", "spire-upstream-server-config", "spire-upstream")["data"][
        "server.conf"
    ]
    assert _config_federations(conf) == {"downstream.example.org"}
    assert 'bundle_endpoint_url = "https://downstream-cluster-control-plane:32443"' in conf


def test_controller_manager_config_names_the_psat_cluster_and_the_shared_socket():
    topology = preset("nested")
    objects = render_kubernetes_objects(topology)
    for s in topology.servers:
        cm = _find(
            objects, "ConfigMap", f"{s.name}-controller-manager-config", s.kubernetes.namespace
        )
        cfg = yaml.safe_load(cm["data"]["controller-manager-config.yaml"])
        assert cfg["kind"] == "ControllerManagerConfig"
        assert cfg["clusterName"] == "nested-cluster"
        assert cfg["className"] == s.name  # two controller managers share the cluster
        assert cfg["spireServerSocketPath"] == K8S.server_socket(s.name)


def test_nested_child_server_reads_its_upstream_svid_through_the_root_agent_csi_driver():
    objects = render_kubernetes_objects(preset("nested"))
    spec = _find(objects, "StatefulSet", "spire-child-server", "spire-child")["spec"]["template"][
        "spec"
    ]
    vol = next(v for v in spec["volumes"] if v["name"] == "upstream-agent")
    assert vol["csi"]["driver"] == "root-agent.csi.spiffe.io"
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "upstream-agent")
    assert K8S.nested_upstream_socket(
        "spire-child-server", preset("nested").agent("root-agent")
    ) == (mount["mountPath"] + "/api.sock")


# A full release version: major.minor.patch, optionally "v"-prefixed and with a variant
# suffix such as "-slim". "8.4" or "3.11-slim" float across patch releases.
PINNED_TAG = re.compile(r"^v?\d+\.\d+\.\d+(-[A-Za-z0-9][A-Za-z0-9.]*)?$")


def _images(objects):
    for o in objects:
        spec = o.get("spec", {}).get("template", {}).get("spec")
        for c in (spec or {}).get("initContainers", []) + (spec or {}).get("containers", []):
            yield c["image"]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_image_is_pinned_to_a_full_version(name):
    images = list(_images(render_kubernetes_objects(preset(name))))
    assert images
    for image in images:
        repo, _, tag = image.rpartition(":")
        assert "/" not in tag and "@" not in repo, image
        assert PINNED_TAG.match(tag), image


@pytest.mark.parametrize("tag", ["8.4", "3.11-slim", "latest", "1.13", "1.13.3-", "1.x.3"])
def test_the_pin_check_refuses_floating_tags(tag):
    assert not PINNED_TAG.match(tag)


@pytest.mark.parametrize("tag", ["8.4.6", "3.11.13-slim", "v2.10.0", "1.13.3"])
def test_the_pin_check_accepts_full_versions(tag):
    assert PINNED_TAG.match(tag)


def test_mysql_and_workload_images_are_pinned_to_patch_releases():
    images = set(_images(render_kubernetes_objects(preset("enterprise"))))
    # the workload image is the project's own, as `deploy image build` tags it
    assert {"mysql:8.4.6", f"spire-fabric:{__version__}"} <= images


def test_spire_images_are_the_pinned_release():
    objects = render_kubernetes_objects(preset("basic"))
    images = {
        c["image"]
        for o in objects
        if o["kind"] in ("StatefulSet", "DaemonSet")
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert {
        "ghcr.io/spiffe/spire-server:1.13.3",
        "ghcr.io/spiffe/spire-agent:1.13.3",
        "ghcr.io/spiffe/spire-controller-manager:0.6.3",
    } <= images


def test_render_cli_writes_the_manifests_under_kubernetes_for_the_kubernetes_target():
    files = render_files(preset("enterprise"), "kubernetes", "/unused")
    manifests = render_kubernetes_manifests(preset("enterprise"))
    assert {f"kubernetes/{k}": v for k, v in manifests.items()}.items() <= files.items()
    assert not [
        k for k in render_files(preset("enterprise"), "local", "/s") if k.startswith("kubernetes/")
    ]


def test_kubernetes_plan_lists_every_manifest_file_with_its_object_counts():
    from spire_fabric.deploy.plan import plan_items

    topology = preset("enterprise")
    items = [i for i in plan_items(topology, "kubernetes") if i.kind == "manifests"]
    assert [i.name for i in items] == sorted(
        render_kubernetes_manifests(topology),
        key=lambda p: (p.split("/")[0] != "upstream-cluster", p),
    )
    workloads = next(i for i in items if i.name == "downstream-cluster/08-workloads.yaml")
    assert workloads.detail == (
        "6 Deployment, 1 PersistentVolumeClaim, 1 Secret, 4 Service, 6 ServiceAccount"
    )
    assert not [i for i in plan_items(topology, "local") if i.kind == "manifests"]


def test_a_workload_naming_its_files_gets_a_secret_mounted_read_only_without_data():
    """{files}: the gateway's key file is a key of its Secret; `up` renders it without data
    (the file's content is the workload's, written as another field manager)."""
    objects = render_kubernetes_objects(preset("enterprise"))
    secret = _find(objects, "Secret", "security-gateway-files", "downstream-workloads")
    assert "data" not in secret
    spec = _find(objects, "Deployment", "security-gateway", "downstream-workloads")["spec"][
        "template"
    ]["spec"]
    c = spec["containers"][0]
    args = c["command"]
    assert args[args.index("--api-keys") + 1] == "/etc/spire-fabric/files/api-keys.json"
    assert {"name": "files", "mountPath": "/etc/spire-fabric/files", "readOnly": True} in c[
        "volumeMounts"
    ]
    volume = next(v for v in spec["volumes"] if v["name"] == "files")
    assert volume["secret"] == {"secretName": "security-gateway-files", "defaultMode": 0o440}
    # a workload that names no files gets neither
    assert not any(o["kind"] == "Secret" and o["metadata"]["name"] == "enterprise-api-files"
                   for o in objects)  # fmt: skip
