"""What application code imports from the package root resolves to the rooms' objects."""

import spire_fabric
from spire_fabric import tls, workload


def test_root_exports_resolve_to_the_same_objects() -> None:
    for name in spire_fabric.__all__:
        assert getattr(spire_fabric, name) is not None, name
    assert spire_fabric.X509Source is workload.X509Source
    assert spire_fabric.mtls_server_context is tls.mtls_server_context


def test_unknown_root_attribute_is_an_attribute_error() -> None:
    try:
        spire_fabric.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as err:
        assert "NoSuchThing" in str(err)
    else:
        raise AssertionError("expected AttributeError")
