"""What `up` checks before it changes anything, so a refusal leaves the clusters as they
were: every namespace we would use is ours or new; every NodePort we ask for is free or
already ours; the user may do what `up` will do (SelfSubjectAccessReview); and the project's
own workload image, which no registry serves, is on a node; and every kubelet an agent
granted only ``nodes/pods`` will ask knows that permission."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from spire_fabric.render.kubernetes import LABEL_TOPOLOGY
from spire_fabric.runtime.images import (
    is_project_image,
    missing_image_hint,
    normalized,
    registry_host,
)
from spire_fabric.runtime.kubernetes._clusters import ClusterApi, api_error_message
from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError
from spire_fabric.runtime.kubernetes._objects import at_once

# (verb, API group, resource): what `up` and the checks do besides applying objects.
_EXTRA_ACCESS = (
    ("create", "", "pods/exec"),
    ("create", "", "pods/portforward"),
    ("patch", "", "nodes"),
    ("list", "", "nodes"),
)
# The kubelet reports at most this many images per node (--node-status-max-images, the
# largest first): on a node that reports this many, a missing name proves nothing.
NODE_STATUS_MAX_IMAGES = 50
# The first kubelet that authorizes GET /pods as nodes/pods (KubeletFineGrainedAuthz, beta
# and on by default in 1.33); an older one asks the API server about nodes/proxy only.
FINE_GRAINED_KUBELET = (1, 33)
FINE_GRAINED_GATE = 'kubernetes_feature_enabled{name="KubeletFineGrainedAuthz"'


def preflight(
    name: str, rendered: Iterable[tuple[str, dict[str, Any]]], clusters: Mapping[str, ClusterApi]
) -> None:
    """Refuse before anything is written: permissions, foreign namespaces, taken NodePorts.
    ``rendered``: (cluster, object) of everything `up` would apply."""
    by_cluster: dict[str, list[dict[str, Any]]] = {}
    for cluster, o in rendered:
        by_cluster.setdefault(cluster, []).append(o)
    for cluster, objs in by_cluster.items():
        conn = clusters[cluster]
        _access(conn, objs)
        _namespaces_ours(conn, name, objs)
        _node_ports_free(conn, objs)
        _project_images_on_nodes(conn, objs)
        _kubelets_know_nodes_pods(conn, objs)


def _namespaces_ours(conn: ClusterApi, topology: str, objs: list[dict[str, Any]]) -> None:
    for o in objs:
        if o["kind"] != "Namespace":
            continue
        name = o["metadata"]["name"]
        try:
            ns = conn.core.read_namespace(name)
        except ApiException as err:
            if err.status == 404:
                continue
            raise KubernetesTargetError(
                f"cannot read namespace {name} in {conn.where()}: {api_error_message(err)}"
            ) from err
        labels = ns.metadata.labels or {}
        if labels.get(LABEL_TOPOLOGY) != topology:
            owner = labels.get(LABEL_TOPOLOGY) or labels.get("app.kubernetes.io/managed-by")
            whose = f"topology {owner!r}" if owner else "something else (no label of ours)"
            raise KubernetesTargetError(
                f"namespace {name} already exists in {conn.where()} and belongs to {whose}; "
                f"spire_fabric applies only into namespaces it created for topology "
                f"{topology!r}. Delete it, or rename the namespace in the topology."
            )


def _node_ports_free(conn: ClusterApi, objs: list[dict[str, Any]]) -> None:
    wanted: dict[int, str] = {}
    for o in objs:
        if o["kind"] != "Service":
            continue
        for p in (o.get("spec") or {}).get("ports") or []:
            if p.get("nodePort"):
                wanted[int(p["nodePort"])] = f"{o['metadata']['namespace']}/{o['metadata']['name']}"
    if not wanted:
        return
    for svc in conn.core.list_service_for_all_namespaces().items:
        here = f"{svc.metadata.namespace}/{svc.metadata.name}"
        for p in svc.spec.ports or []:
            if p.node_port in wanted and wanted[p.node_port] != here:
                raise KubernetesTargetError(
                    f"NodePort {p.node_port} is already allocated in {conn.where()} to service "
                    f"{here}; our service {wanted[p.node_port]} needs it. Free it or change "
                    "the node port in the topology."
                )


def _container_images(o: dict[str, Any]) -> list[str]:
    spec = o.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or spec
    return [
        str(c["image"])
        for c in (pod.get("containers") or []) + (pod.get("initContainers") or [])
        if c.get("image")
    ]


def _project_images_on_nodes(conn: ClusterApi, objs: list[dict[str, Any]]) -> None:
    """The project's image under a bare name (`spire-fabric:<version>`, no registry) can
    only come from a node's own store: refuse when no Ready node reports it (the kubelet
    lists each node's images in ``status.images``), naming the command that makes it."""
    wanted = sorted(
        {i for o in objs for i in _container_images(o) if is_project_image(i)
         and registry_host(i) is None and "@" not in i}
    )  # fmt: skip
    if not wanted:
        return
    nodes = _nodes(conn)
    have: set[str] = set()
    for node in nodes:
        status = node.status
        if not any(c.type == "Ready" and c.status == "True" for c in status.conditions or []):
            continue
        images = status.images or []
        if len(images) >= NODE_STATUS_MAX_IMAGES:
            return
        have |= {normalized(n) for i in images for n in i.names or [] if "@" not in n}
    for image in wanted:
        if normalized(image) not in have:
            raise KubernetesTargetError(
                f"image {image} is on no node of {conn.where()}: {missing_image_hint(image)}"
            )


def _access(conn: ClusterApi, objs: list[dict[str, Any]]) -> None:
    auth = k8s.AuthorizationV1Api(conn.api)
    needed: set[tuple[str, str, str, str]] = set()
    for o in objs:
        group = o["apiVersion"].rpartition("/")[0] if "/" in o["apiVersion"] else ""
        plural = _plural(o["kind"])
        ns = o["metadata"].get("namespace", "")
        for verb in ("get", "patch", "create"):
            needed.add((verb, group, plural, ns))
    for verb, group, resource in _EXTRA_ACCESS:
        needed.add((verb, group, resource, ""))

    def review(need: tuple[str, str, str, str]) -> Any:
        verb, group, resource, ns = need
        sub = None
        if "/" in resource:
            resource, sub = resource.split("/", 1)
        review = k8s.V1SelfSubjectAccessReview(
            spec=k8s.V1SelfSubjectAccessReviewSpec(
                resource_attributes=k8s.V1ResourceAttributes(
                    verb=verb, group=group, resource=resource, subresource=sub,
                    namespace=ns or None,
                )
            )
        )  # fmt: skip
        try:
            return auth.create_self_subject_access_review(review).status
        except ApiException as err:  # raised below, in order
            return KubernetesTargetError(
                f"cannot ask {conn.where()} what we may do: {api_error_message(err)}"
            )

    # asked at the same time (a hundred reviews per cluster), judged in order: the first
    # refusal in sorted order is the one named, as when they were asked one by one
    ordered = sorted(needed)
    for (verb, group, resource, ns), status in zip(ordered, at_once(review, ordered),
                                                   strict=True):  # fmt: skip
        sub = None
        if "/" in resource:
            resource, sub = resource.split("/", 1)
        if isinstance(status, KubernetesTargetError):
            raise status
        if not status.allowed:
            what = f"{resource}/{sub}" if sub else resource
            what += f".{group}" if group else ""
            where = f"in namespace {ns}" if ns else "(cluster-wide)"
            raise KubernetesTargetError(
                f"no permission in {conn.where()}: cannot {verb} {what} {where}"
                + (f": {status.reason}" if status.reason else "")
            )


def _plural(kind: str) -> str:
    special = {"NetworkPolicy": "networkpolicies"}
    if kind in special:
        return special[kind]
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + ("es" if lower.endswith("s") else "s")


def _nodes_pods_agents(objs: list[dict[str, Any]]) -> list[str]:
    """The agent DaemonSets whose service account is granted ``nodes/pods`` (and so not
    ``nodes/proxy``) by the rendered ClusterRoles."""
    roles = {
        o["metadata"]["name"]
        for o in objs
        if o["kind"] == "ClusterRole"
        and any("nodes/pods" in r.get("resources", []) for r in o.get("rules") or [])
    }
    accounts = {
        (s["namespace"], s["name"])
        for o in objs
        if o["kind"] == "ClusterRoleBinding" and o["roleRef"]["name"] in roles
        for s in o.get("subjects") or []
    }
    agents = []
    for o in objs:
        pod = ((o.get("spec") or {}).get("template") or {}).get("spec") or {}
        account = (o["metadata"].get("namespace"), pod.get("serviceAccountName"))
        if o["kind"] == "DaemonSet" and pod.get("hostPID") and account in accounts:
            agents.append(o["metadata"]["name"])
    return sorted(agents)


def kubelet_version(text: str) -> tuple[int, int] | None:
    """(major, minor) of a kubelet's reported version (``v1.32.4``, ``v1.33.1-eks-1``)."""
    parts = text.lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def _gate_disabled(conn: ClusterApi, node: str) -> bool:
    """Whether the node's kubelet reports KubeletFineGrainedAuthz off in its /metrics (a
    1.33+ kubelet can be started with the gate off). Read through the API server's node
    proxy; a user who may not do that learns nothing here, and the version decides."""
    try:
        text = conn.core.connect_get_node_proxy_with_path(node, "metrics")
    except ApiException:
        return False
    for line in str(text).splitlines():
        if line.startswith(FINE_GRAINED_GATE):
            return line.rsplit(" ", 1)[-1].strip() in ("0", "0.0")
    return False


def _kubelets_know_nodes_pods(conn: ClusterApi, objs: list[dict[str, Any]]) -> None:
    """An agent granted ``nodes/pods`` only would be refused by an older kubelet on every
    attestation (403 from /pods): refuse now, naming the setting that grants nodes/proxy."""
    agents = _nodes_pods_agents(objs)
    if not agents:
        return
    nodes = _nodes(conn)
    for node in nodes:
        name = node.metadata.name
        reported = node.status.node_info.kubelet_version if node.status.node_info else ""
        version = kubelet_version(reported or "")
        if version is not None and version >= FINE_GRAINED_KUBELET:
            if not _gate_disabled(conn, name):
                continue
            why = f"runs kubelet {reported} with the KubeletFineGrainedAuthz feature gate off"
        elif version is not None:
            why = f"runs kubelet {reported}, older than 1.33"
        else:
            why = f"reports kubelet version {reported!r}, which does not say it is 1.33+"
        settings = ", ".join(f"agents[{a}].kubernetes.kubelet_access" for a in agents)
        raise KubernetesTargetError(
            f"node {name} of {conn.where()} {why}: it authorizes the k8s workload "
            f"attestor's /pods call as nodes/proxy only, and the agents are granted "
            f"nodes/pods. Set {settings} to nodes/proxy (it grants every kubelet endpoint, "
            "exec included), or upgrade the kubelets."
        )


def _nodes(conn: ClusterApi) -> list[Any]:
    """The cluster's nodes; a refusal names the cluster (both node checks read them)."""
    try:
        return list(conn.core.list_node().items)
    except ApiException as err:
        raise KubernetesTargetError(
            f"cannot list the nodes of {conn.where()}: {api_error_message(err)}"
        ) from err
