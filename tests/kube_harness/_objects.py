"""The objects every test cluster gets before tests: CoreDNS, a default storage class,
retained hostPath volumes (no provisioner can be built here) and the NetworkPolicy
enforcer (`_netpol`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kube_harness import _images
from kube_harness._netpol import enforcer_manifests
from kube_harness._plan import CLUSTER_DOMAIN, PV_COUNT, STORAGE_CLASS, ClusterSpec


def dns_replicas(spec: ClusterSpec) -> int:
    return min(2, spec.nodes)


def bootstrap_manifests(spec: ClusterSpec, d: Path) -> list[dict[str, Any]]:
    coredns = _images.image_set()["coredns"].ref
    corefile = (
        ".:53 {\n    errors\n    health :8080\n    ready :8181\n"
        f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        "        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n    }\n"
        "    cache 30\n    loop\n    reload\n}\n"
    )
    labels = {"k8s-app": "kube-dns"}
    docs: list[dict[str, Any]] = [
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": STORAGE_CLASS, "annotations": {
             "storageclass.kubernetes.io/is-default-class": "true"}},
         "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate",
         "reclaimPolicy": "Retain"},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "coredns", "namespace": "kube-system"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:coredns"},
         "rules": [
             {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
              "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns",
                       "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "coredns", "namespace": "kube-system"},
         "data": {"Corefile": corefile}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
         # two replicas on two nodes where there are two, as kubeadm deploys it: a node
         # lost must not take the cluster's only DNS server with it
         "spec": {"replicas": dns_replicas(spec), "selector": {"matchLabels": labels},
                  "template": {
             "metadata": {"labels": labels},
             "spec": {
                 "serviceAccountName": "coredns",
                 "dnsPolicy": "Default",
                 "affinity": {"podAntiAffinity": {
                     "requiredDuringSchedulingIgnoredDuringExecution": [{
                         "labelSelector": {"matchLabels": labels},
                         "topologyKey": "kubernetes.io/hostname"}]}},
                 "containers": [{
                     "name": "coredns", "image": coredns, "imagePullPolicy": "Never",
                     "args": ["-conf", "/etc/coredns/Corefile"],
                     "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"},
                               {"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"}],
                     "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                                        "periodSeconds": 2},
                     "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                 }],
                 "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
             }}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"clusterIP": spec.dns_ip, "selector": labels, "ports": [
             {"name": "dns", "port": 53, "protocol": "UDP"},
             {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}},
    ]
    docs += enforcer_manifests()
    for i in range(PV_COUNT):
        # Made here, world-writable like a local-path provisioner's: a hostPath volume gets
        # no fsGroup ownership change, and SPIRE (uid 1000) and MySQL (uid 999) must write.
        volume = d / "volumes" / f"pv-{i}"
        volume.mkdir(parents=True, exist_ok=True)
        volume.chmod(0o777)
        docs.append({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"sfk-pv-{i}"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": STORAGE_CLASS,
                     "persistentVolumeReclaimPolicy": "Retain",
                     "hostPath": {"path": str(d / "volumes" / f"pv-{i}"),
                                  "type": "DirectoryOrCreate"}}})
    return docs


# ------------------------------------------------------------------------ public
