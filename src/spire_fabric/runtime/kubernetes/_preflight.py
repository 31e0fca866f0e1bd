"""What `up` checks before it changes anything, so a refusal leaves the clusters as they
were: every namespace we would use is ours or new; every NodePort we ask for is free or
already ours; the user may do what `up` will do (SelfSubjectAccessReview); and the project's
own workload image, which no registry serves, is on a node."""

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
    try:
        nodes = conn.core.list_node().items
    except ApiException as err:
        raise KubernetesTargetError(
            f"cannot list the nodes of {conn.where()}: {api_error_message(err)}"
        ) from err
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
    for verb, group, resource, ns in sorted(needed):
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
            result = auth.create_self_subject_access_review(review)
        except ApiException as err:
            raise KubernetesTargetError(
                f"cannot ask {conn.where()} what we may do: {api_error_message(err)}"
            ) from err
        status: Any = result.status
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
