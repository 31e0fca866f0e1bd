"""The address can be given to a source as to a client, and audiences as a list."""

from __future__ import annotations

import pytest

from spire_fabric.workload import SourceNotReadyError, X509Source
from spire_fabric.workload._base import audiences
from spire_fabric.workload._source_core import client_or_endpoint


def test_a_source_takes_the_address_as_its_first_argument_like_the_client() -> None:
    assert client_or_endpoint("unix:///tmp/agent.sock", None, "X509Source") == (
        None,
        "unix:///tmp/agent.sock",
    )
    client = object()
    assert client_or_endpoint(client, None, "X509Source") == (client, None)


def test_the_address_given_twice_is_a_type_error_naming_endpoint() -> None:
    with pytest.raises(TypeError, match="endpoint="):
        client_or_endpoint("unix:///a.sock", "unix:///b.sock", "X509Source")


def test_x509_source_with_a_string_uses_it_as_the_endpoint() -> None:
    # No agent there: the source fails to become ready -- at that address, not with a
    # TypeError about the client argument.
    address = "unix:///nonexistent/spire-fabric/agent.sock"
    with pytest.raises(SourceNotReadyError, match=r"nonexistent/spire-fabric/agent\.sock"):
        X509Source(address, first_update_timeout=0.2)


def test_audiences_as_a_list() -> None:
    assert audiences(["aud1", "aud2"], ()) == ("aud1", "aud2")
    assert audiences("aud1", ("aud2", "aud1")) == ("aud1", "aud2")
    with pytest.raises(ValueError, match="at least one"):
        audiences([], ())
    with pytest.raises(ValueError, match="non-empty strings"):
        audiences([["nested"]], ())  # type: ignore[list-item]
