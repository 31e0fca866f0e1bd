"""Every rendered object is checked against the real Kubernetes OpenAPI schemas
(kubernetes-validate, strict: unknown fields fail) and every custom resource against the
openAPIV3Schema of the CRD we render for it."""

from __future__ import annotations

import copy

import jsonschema
import kubernetes_validate
import pytest
from k8s_manifest_checks import crd_schemas, validate_custom_resource

from spire_fabric.render.kubernetes import render_kubernetes_objects
from spire_fabric.topology import PRESET_NAMES, preset

K8S_VERSION = kubernetes_validate.latest_version()
CR_GROUP = "spire.spiffe.io/"


def _objects(name: str) -> list[dict]:
    return render_kubernetes_objects(preset(name))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_builtin_object_validates_strictly_against_kubernetes_schemas(name):
    checked = 0
    for o in _objects(name):
        if o["apiVersion"].startswith(CR_GROUP):
            continue
        kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        checked += 1
    assert checked > 10


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_custom_resource_validates_against_the_rendered_crd_schema(name):
    objects = _objects(name)
    schemas = crd_schemas(objects)
    custom = [o for o in objects if o["apiVersion"].startswith(CR_GROUP)]
    for o in custom:
        validate_custom_resource(o, schemas)
    if custom:
        assert schemas, "custom resources rendered without their CRDs"


def test_enterprise_renders_all_three_controller_manager_kinds():
    kinds = {o["kind"] for o in _objects("enterprise") if o["apiVersion"].startswith(CR_GROUP)}
    assert kinds == {"ClusterSPIFFEID", "ClusterFederatedTrustDomain", "ClusterStaticEntry"}


def _deployment() -> dict:
    return copy.deepcopy(next(o for o in _objects("enterprise") if o["kind"] == "Deployment"))


def test_a_deployment_with_a_string_replica_count_is_refused():
    broken = _deployment()
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError, match="three"):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_a_deployment_with_an_unknown_field_is_refused():
    broken = _deployment()
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError, match="imagePullPolicyy"):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def _cluster_spiffe_id() -> tuple[dict, dict]:
    objects = _objects("enterprise")
    cr = next(o for o in objects if o["kind"] == "ClusterSPIFFEID")
    return copy.deepcopy(cr), crd_schemas(objects)


def test_a_cluster_spiffe_id_with_an_unknown_field_is_refused():
    cr, schemas = _cluster_spiffe_id()
    cr["spec"]["spiffeIdTemplate"] = cr["spec"]["spiffeIDTemplate"]  # wrong case
    with pytest.raises(jsonschema.ValidationError, match="spiffeIdTemplate"):
        validate_custom_resource(cr, schemas)


def test_a_cluster_spiffe_id_without_its_template_is_refused():
    cr, schemas = _cluster_spiffe_id()
    del cr["spec"]["spiffeIDTemplate"]
    with pytest.raises(jsonschema.ValidationError, match="spiffeIDTemplate"):
        validate_custom_resource(cr, schemas)


def test_a_federated_trust_domain_with_an_unknown_profile_is_refused():
    objects = _objects("enterprise")
    cr = copy.deepcopy(next(o for o in objects if o["kind"] == "ClusterFederatedTrustDomain"))
    cr["spec"]["bundleEndpointProfile"]["type"] = "https_insecure"
    with pytest.raises(jsonschema.ValidationError, match="https_insecure"):
        validate_custom_resource(cr, crd_schemas(objects))
