"""Checks the tests run over rendered manifests: a Pod Security "restricted" checker
(written from the Pod Security Standards, https://kubernetes.io/docs/concepts/security/
pod-security-standards/, profile "latest") and CRD-schema validation of custom resources."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

Obj = dict[str, Any]

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SECCOMP_OK = {"RuntimeDefault", "Localhost"}


def pod_spec(o: Obj) -> Obj | None:
    if o["kind"] == "Pod":
        return o["spec"]
    if o["kind"] in WORKLOAD_KINDS:
        return o["spec"]["template"]["spec"]
    return None


def restricted_violations(spec: Obj) -> list[str]:
    """Every way ``spec`` breaks Pod Security "restricted" (empty list: it complies)."""
    bad: list[str] = []
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host):
            bad.append(f"{host} is true")
    for v in spec.get("volumes", []):
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"volume {v['name']} is {sorted(kinds - RESTRICTED_VOLUMES)}")
    pod_sc = spec.get("securityContext", {})
    pod_seccomp = pod_sc.get("seccompProfile", {}).get("type")
    if pod_sc.get("runAsUser") == 0:
        bad.append("pod runAsUser is 0")
    for c in spec.get("initContainers", []) + spec["containers"]:
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation is not false")
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            bad.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            bad.append(f"{name}: runs as uid 0")
        if sc.get("seccompProfile", {}).get("type", pod_seccomp) not in SECCOMP_OK:
            bad.append(f"{name}: seccompProfile is not RuntimeDefault/Localhost")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            bad.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: adds capabilities {caps['add']}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            bad.append(f"{name}: uses a hostPort")
    return bad


def strict_schema(schema: Obj) -> Obj:
    """The CRD's openAPIV3Schema with unknown fields refused: the API server would prune
    them silently, which is exactly the mistake a test must catch."""
    s = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node.setdefault("additionalProperties", False)
            for k, v in node.items():
                if k != "x-kubernetes-map-type":
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


def crd_schemas(objects: list[Obj]) -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) -> strict schema, from the rendered CRDs themselves."""
    out: dict[tuple[str, str], Obj] = {}
    for o in objects:
        if o["kind"] != "CustomResourceDefinition":
            continue
        spec = o["spec"]
        for v in spec["versions"]:
            key = (f"{spec['group']}/{v['name']}", spec["names"]["kind"])
            out[key] = strict_schema(v["schema"]["openAPIV3Schema"])
    return out


def validate_custom_resource(o: Obj, schemas: dict[tuple[str, str], Obj]) -> None:
    schema = schemas[(o["apiVersion"], o["kind"])]
    jsonschema.validate(o, schema, cls=jsonschema.Draft7Validator)
