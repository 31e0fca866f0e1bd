"""The three spire-controller-manager CRDs the renderer's resources need.

Written here from reading the CRDs of spire-controller-manager 0.6.3
(config/crd/bases/spire.spiffe.io_*.yaml): same group, names, scope, version and the
same property names, types, enums and required lists, without the upstream descriptions.
Nothing is copied or downloaded at run time; the tests validate every rendered resource
against these very schemas, so a field the controller does not know cannot slip through.
"""

from __future__ import annotations

from typing import Any

from spire_fabric.render.kubernetes._common import Obj, meta, obj
from spire_fabric.topology import Topology

GROUP = "spire.spiffe.io"
VERSION = "v1alpha1"


def _s() -> Obj:
    return {"type": "string"}


def _b() -> Obj:
    return {"type": "boolean"}


def _i() -> Obj:
    return {"type": "integer"}


def _strings() -> Obj:
    return {"type": "array", "items": _s()}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> Obj:
    o: Obj = {"type": "object", "properties": properties}
    if required:
        o["required"] = required
    return o


def _label_selector() -> Obj:
    requirement = _object(
        {"key": _s(), "operator": _s(), "values": _strings()}, ["key", "operator"]
    )
    sel = _object(
        {
            "matchExpressions": {"type": "array", "items": requirement},
            "matchLabels": {"type": "object", "additionalProperties": _s()},
        }
    )
    sel["x-kubernetes-map-type"] = "atomic"
    return sel


def _root(spec: Obj, status: Obj) -> Obj:
    return _object(
        {
            "apiVersion": _s(),
            "kind": _s(),
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        }
    )


CLUSTER_SPIFFE_ID_SCHEMA: Obj = _root(
    _object(
        {
            "admin": _b(),
            "autoPopulateDNSNames": _b(),
            "className": _s(),
            "dnsNameTemplates": _strings(),
            "downstream": _b(),
            "fallback": _b(),
            "federatesWith": _strings(),
            "hint": _s(),
            "jwtTtl": _s(),
            "namespaceSelector": _label_selector(),
            "podSelector": _label_selector(),
            "spiffeIDTemplate": _s(),
            "ttl": _s(),
            "workloadSelectorTemplates": _strings(),
        },
        ["spiffeIDTemplate"],
    ),
    _object(
        {
            "stats": _object(
                {
                    k: _i()
                    for k in (
                        "entriesMasked",
                        "entriesToSet",
                        "entryFailures",
                        "namespacesIgnored",
                        "namespacesSelected",
                        "podEntryRenderFailures",
                        "podsSelected",
                    )
                }
            )
        }
    ),
)

CLUSTER_FEDERATED_TRUST_DOMAIN_SCHEMA: Obj = _root(
    _object(
        {
            "bundleEndpointProfile": _object(
                {
                    "endpointSPIFFEID": _s(),
                    "type": {"type": "string", "enum": ["https_spiffe", "https_web"]},
                },
                ["type"],
            ),
            "bundleEndpointURL": _s(),
            "className": _s(),
            "trustDomain": {"type": "string", "pattern": "[a-z0-9._-]{1,255}"},
            "trustDomainBundle": _s(),
        },
        ["bundleEndpointProfile", "bundleEndpointURL", "trustDomain"],
    ),
    {"type": "object"},
)

CLUSTER_STATIC_ENTRY_SCHEMA: Obj = _root(
    _object(
        {
            "admin": _b(),
            "className": _s(),
            "dnsNames": _strings(),
            "downstream": _b(),
            "federatesWith": _strings(),
            "hint": _s(),
            "jwtSVIDTTL": _s(),
            "parentID": _s(),
            "selectors": _strings(),
            "spiffeID": _s(),
            "storeSVID": _b(),
            "x509SVIDTTL": _s(),
        },
        ["parentID", "selectors", "spiffeID"],
    ),
    _object({"masked": _b(), "rendered": _b(), "set": _b()}, ["masked", "rendered", "set"]),
)

# kind -> (plural, openAPIV3Schema, additional printer columns)
CRDS: dict[str, tuple[str, Obj, list[Obj]]] = {
    "ClusterFederatedTrustDomain": (
        "clusterfederatedtrustdomains",
        CLUSTER_FEDERATED_TRUST_DOMAIN_SCHEMA,
        [
            {"jsonPath": ".spec.trustDomain", "name": "Trust Domain", "type": "string"},
            {"jsonPath": ".spec.bundleEndpointURL", "name": "Endpoint URL", "type": "string"},
        ],
    ),
    "ClusterSPIFFEID": ("clusterspiffeids", CLUSTER_SPIFFE_ID_SCHEMA, []),
    "ClusterStaticEntry": ("clusterstaticentries", CLUSTER_STATIC_ENTRY_SCHEMA, []),
}


def render_crds(topology: Topology, cluster: str) -> list[Obj]:
    out: list[Obj] = []
    for kind, (plural, schema, columns) in CRDS.items():
        version: Obj = {
            "name": VERSION,
            "served": True,
            "storage": True,
            "schema": {"openAPIV3Schema": schema},
            "subresources": {"status": {}},
        }
        if columns:
            version["additionalPrinterColumns"] = columns
        out.append(
            obj(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                meta(topology, cluster, f"{plural}.{GROUP}", component="crd"),
                spec={
                    "group": GROUP,
                    "names": {
                        "kind": kind,
                        "listKind": f"{kind}List",
                        "plural": plural,
                        "singular": kind.lower(),
                    },
                    "scope": "Cluster",
                    "versions": [version],
                },
            )
        )
    return out
