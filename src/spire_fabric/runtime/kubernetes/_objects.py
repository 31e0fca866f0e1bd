"""Server-side apply with our own field manager, the plan's object diff, and finding
exactly what we applied (by our labels) so ``down`` deletes that and nothing else."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from spire_fabric.render.kubernetes import LABEL_TOPOLOGY
from spire_fabric.runtime.kubernetes._clusters import ClusterApi, api_error_message
from spire_fabric.runtime.kubernetes._errors import KubernetesTargetError

Obj = dict[str, Any]
T = TypeVar("T")
R = TypeVar("R")
FIELD_MANAGER = "spire-fabric"
# API requests at the same time for `plan`, `up`'s checks and its applies: each is a round
# trip of 10-30 ms that waits on the API server, not on our CPU, and an enterprise `up` made
# a few hundred one after the other (6-7 s before its first step on a loaded machine; its
# workloads' 40 objects took 2.5-3.7 s); bounded under the client's connection pool (10).
READERS = 8
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"

# Every kind the renderer makes, in the order `down` deletes them (dependents first).
OWNED_KINDS: tuple[tuple[str, str], ...] = (
    ("spire.spiffe.io/v1alpha1", "ClusterSPIFFEID"),
    ("spire.spiffe.io/v1alpha1", "ClusterStaticEntry"),
    ("spire.spiffe.io/v1alpha1", "ClusterFederatedTrustDomain"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "StatefulSet"),
    ("policy/v1", "PodDisruptionBudget"),
    ("v1", "Service"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("storage.k8s.io/v1", "CSIDriver"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("v1", "Namespace"),
)
# Fields the API server owns; equal objects differ in these after every write.
_VOLATILE_META = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, o: Obj) -> ObjectRef:
        m = o["metadata"]
        return cls(o["apiVersion"], o["kind"], m.get("namespace", ""), m["name"])

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


def resource(conn: ClusterApi, api_version: str, kind: str) -> Any:
    """The dynamic client's resource, looked up under the connection's discovery lock
    (the client's discovery cache is not thread-safe; see ClusterApi)."""
    with conn.discovery_lock:
        try:
            return conn.dyn.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            conn.refresh_discovery()  # a CRD applied moments ago
            return conn.dyn.resources.get(api_version=api_version, kind=kind)


def get_live(conn: ClusterApi, ref: ObjectRef) -> Obj | None:
    try:
        res = resource(conn, ref.api_version, ref.kind)
    except ResourceNotFoundError:
        return None  # its CRD is not there, so neither is it
    try:
        live = res.get(name=ref.name, namespace=ref.namespace or None)
    except NotFoundError:
        return None
    return dict(live.to_dict())


def apply(
    conn: ClusterApi, o: Obj, *, dry_run: bool = False, manager: str = FIELD_MANAGER
) -> Obj:
    """Server-side apply as ``manager`` (forcing: these fields are ours by design)."""
    ref = ObjectRef.of(o)
    res = resource(conn, ref.api_version, ref.kind)
    kwargs: dict[str, Any] = {"field_manager": manager, "force_conflicts": True}
    if dry_run:
        kwargs["dry_run"] = "All"
    replaced = False
    for attempt in range(5):
        try:
            out = res.server_side_apply(
                body=o, name=ref.name, namespace=ref.namespace or None, **kwargs
            )
            return dict(out.to_dict())
        except ApiException as err:
            if err.status == 409 and attempt < 4:  # an optimistic-lock race; apply again
                time.sleep(0.5)
                continue
            if _stateful_set_spec_forbidden(ref, err) and dry_run:
                raise KubernetesTargetError(
                    f"{ref} in {conn.where()} changes fields the API server cannot update "
                    "(volume claims, pod management): up replaces it, keeping its pods"
                ) from err
            if _stateful_set_spec_forbidden(ref, err) and not replaced:
                # Only replicas, template, update strategy and a few others of a
                # StatefulSet may change (a server becoming highly available drops its
                # volume claim and starts its replicas in parallel). The old one is
                # deleted orphaning its pods, which keep serving; the new one adopts them
                # by their labels and rolls them to the new template one at a time.
                delete(conn, [ref], propagation="Orphan")
                wait_gone(conn, [ref], timeout=60)
                replaced = True
                continue
            if _secret_type_changed(ref, err):
                if dry_run:
                    raise KubernetesTargetError(
                        f"{ref} in {conn.where()} changes its type to {o.get('type')}, which "
                        "the API server cannot update: up replaces it"
                    ) from err
                if not replaced:
                    # Secret types are immutable: one an older `up` made Opaque (the signing
                    # CA's, before it was typed kubernetes.io/tls) is made anew, same data.
                    delete(conn, [ref])
                    wait_gone(conn, [ref], timeout=60)
                    replaced = True
                    continue
            raise KubernetesTargetError(_apply_error(conn, ref, err)) from err
    raise AssertionError("unreachable")


def _stateful_set_spec_forbidden(ref: ObjectRef, err: ApiException) -> bool:
    message = api_error_message(err)
    return (ref.kind == "StatefulSet" and err.status == 422
            and "updates to statefulset spec for fields other than" in message)  # fmt: skip


def _secret_type_changed(ref: ObjectRef, err: ApiException) -> bool:
    message = api_error_message(err)
    return (ref.kind == "Secret" and err.status == 422 and "type: Invalid value" in message
            and "field is immutable" in message)  # fmt: skip


def _apply_error(conn: ClusterApi, ref: ObjectRef, err: ApiException) -> str:
    message = api_error_message(err)
    if err.status == 403:
        return f"no permission to apply {ref} in {conn.where()}: {message}"
    if "port is already allocated" in message or "provided port is already allocated" in message:
        return f"cannot apply {ref} in {conn.where()}: a NodePort it needs is taken: {message}"
    return f"cannot apply {ref} in {conn.where()}: {message}"


def normalized(o: Obj) -> Obj:
    out = copy.deepcopy(o)
    out.pop("status", None)
    meta = out.get("metadata", {})
    for key in _VOLATILE_META:
        meta.pop(key, None)
    ann = meta.get("annotations") or {}
    ann.pop("deprecated.daemonset.template.generation", None)
    if not ann:
        meta.pop("annotations", None)
    return out


def changed_fields(live: Obj, applied: Obj, depth: int = 3) -> list[str]:
    """Dotted paths (to ``depth``) where a dry-run apply would change the live object."""
    out: list[str] = []

    def walk(a: Any, b: Any, path: str, level: int) -> None:
        if a == b:
            return
        if isinstance(a, dict) and isinstance(b, dict) and level < depth:
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{path}.{key}" if path else key, level + 1)
            return
        out.append(path or "(whole object)")

    walk(normalized(live), normalized(applied), "", 0)
    return out


def list_ours(conn: ClusterApi, topology_name: str) -> list[Obj]:
    """Every object in the cluster that carries our labels for this topology, in the order
    of :data:`OWNED_KINDS`. The kinds are listed at the same time: `up` lists them twice
    per cluster (its plan, and what to delete at its end), 80 round trips that took seconds
    one after the other on a loaded machine."""
    selector = f"{LABEL_TOPOLOGY}={topology_name},{LABEL_MANAGED_BY}=spire-fabric"

    def of_kind(kind_of: tuple[str, str]) -> list[Obj]:
        api_version, kind = kind_of
        try:
            res = resource(conn, api_version, kind)
        except ResourceNotFoundError:
            return []
        try:
            items = res.get(label_selector=selector).to_dict().get("items", [])
        except ApiException as err:
            if err.status == 404:
                return []
            raise KubernetesTargetError(
                f"cannot list {kind} in {conn.where()}: {api_error_message(err)}"
            ) from err
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return list(items)

    return [item for items in at_once(of_kind, OWNED_KINDS) for item in items]


def foreign_custom_resources(conn: ClusterApi, crd: Obj, topology_name: str) -> list[str]:
    """Custom resources of this CRD that this topology did not apply (another topology's,
    or a user's own): deleting the CRD would delete them with it."""
    spec = crd.get("spec") or {}
    group, kind = spec.get("group", ""), (spec.get("names") or {}).get("kind", "")
    found: list[str] = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        try:
            items = resource(conn, f"{group}/{version['name']}", kind).get().to_dict()
        except (ResourceNotFoundError, ApiException):
            continue
        for item in items.get("items", []):
            meta = item.get("metadata") or {}
            labels = meta.get("labels") or {}
            if labels.get(LABEL_TOPOLOGY) != topology_name:
                owner = labels.get(LABEL_TOPOLOGY)
                where = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
                found.append(f"{kind} {where}{meta.get('name')}"
                             + (f" (topology {owner})" if owner else ""))  # fmt: skip
        break  # one served version lists them all
    return found


def delete(
    conn: ClusterApi, refs: Iterable[ObjectRef], *, propagation: str = "Foreground"
) -> list[ObjectRef]:
    """Delete (foreground for owners of pods, unless ``propagation`` says Orphan),
    ignoring what is already gone."""
    deleted = []
    for ref in refs:
        try:
            res = resource(conn, ref.api_version, ref.kind)
            res.delete(
                name=ref.name,
                namespace=ref.namespace or None,
                body={"propagationPolicy": propagation},
            )
            deleted.append(ref)
        except (NotFoundError, ResourceNotFoundError):
            continue
        except ApiException as err:
            if err.status == 404:
                continue
            raise KubernetesTargetError(
                f"cannot delete {ref} in {conn.where()}: {api_error_message(err)}"
            ) from err
    return deleted


def wait_gone(conn: ClusterApi, refs: list[ObjectRef], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    remaining = list(refs)
    while remaining and time.monotonic() < deadline:
        remaining = [r for r in remaining if get_live(conn, r) is not None]
        if remaining:
            time.sleep(1)
    if remaining:
        raise KubernetesTargetError(
            f"still there after {timeout:.0f}s in {conn.where()}: "
            + ", ".join(str(r) for r in remaining[:8])
        )


def at_once(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(i) for i in items]`` with the calls made at the same time (:data:`READERS`),
    reads or applies:
    results in the order of ``items``, and the first item's error (in that order) raised,
    as the loop would have."""
    with ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="k8s-read") as pool:
        return list(pool.map(fn, items))
