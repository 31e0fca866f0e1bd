"""The test clusters' NetworkPolicy enforcer: kube-network-policies, as upstream deploys it.

The bridge CNI of the nodes enforces no NetworkPolicy, so without an enforcer a rendered
policy would be a document, not a fence. kube-network-policies (Kubernetes SIG Network)
runs as its own install.yaml runs it: a DaemonSet in kube-system, one pod per node on the
host network (here: the node's network namespace, where the kubelet and kube-proxy are),
privileged for netlink. It keeps a table ``inet kube-network-policies`` in the node's
namespace that sends the first packet of every connection to or from a pod selected by
some policy to an nfqueue, and its userspace side accepts or drops it by the policies.

Why a DaemonSet rather than a node process like kube-proxy: the program only knows the
in-cluster configuration (a service-account token at a fixed path), which a pod gets for
free and a process on the host would need faked at a host path shared by every node.

What it creates goes away with what `down` already removes: the pods with their DaemonSet
(the program deletes its table when it stops), and the table with the node's network
namespace in any case. See docs/kubernetes-test-clusters.md for the kernel's part.

Flags: ``--disable-nri`` (the nodes' containerd runs no NRI socket; pod IPs come from the
API), ``--netfilter-bug-1766-fix=false`` (a DNS workaround for kernels before 6.12; this
machine runs a newer one), fail-open off (upstream's default: no enforcer, no new
connection to a fenced pod).
"""

from __future__ import annotations

from typing import Any

from kube_harness import _images

NAME = "kube-network-policies"
NAMESPACE = "kube-system"
NFQUEUE_ID = 100


def enforcer_manifests() -> list[dict[str, Any]]:
    """ServiceAccount, the read-only ClusterRole of upstream's install.yaml, its binding,
    and the DaemonSet."""
    image = _images.image_set()[NAME].ref
    labels = {"k8s-app": NAME}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": NAME, "namespace": NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": NAME},
         "rules": [
             {"apiGroups": [""], "resources": ["pods", "namespaces"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
              "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": NAME},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
         "spec": {"selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {
                 "hostNetwork": True,
                 "serviceAccountName": NAME,
                 "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                 "containers": [{
                     "name": NAME, "image": image, "imagePullPolicy": "Never",
                     "args": ["--hostname-override=$(NODE_NAME)", "--disable-nri",
                              "--netfilter-bug-1766-fix=false", f"--nfqueue-id={NFQUEUE_ID}",
                              "--metrics-bind-address=127.0.0.1:9080", "--v=2"],
                     "env": [{"name": "NODE_NAME",
                              "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                     "securityContext": {"privileged": True,
                                         "capabilities": {"add": ["NET_ADMIN"]}},
                 }],
             }}}},
    ]


def enforcer_ready(apps: Any, nodes: int) -> bool:
    """Its pod runs and is ready on every node."""
    ds = apps.read_namespaced_daemon_set(NAME, NAMESPACE)
    ready = (ds.status.number_ready if ds.status else None) or 0
    return bool(ready >= nodes)
