"""Workload API addresses: the forms the Workload Endpoint spec allows, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from spire_fabric.workload import InvalidEndpointError, parse_endpoint, resolve_endpoint


@pytest.mark.parametrize(
    ("address", "target", "path"),
    [
        ("unix:///run/spire/agent.sock", "unix:/run/spire/agent.sock", "/run/spire/agent.sock"),
        ("unix:/run/agent.sock", "unix:/run/agent.sock", "/run/agent.sock"),
        ("unix:relative/agent.sock", "unix:relative/agent.sock", "relative/agent.sock"),
    ],
)
def test_unix_forms_are_accepted_with_their_socket_path(address, target, path) -> None:
    endpoint = parse_endpoint(address)
    assert endpoint.target == target
    assert endpoint.socket_path == Path(path)


def test_tcp_ip_and_port_are_accepted() -> None:
    assert parse_endpoint("tcp://127.0.0.1:8081").target == "ipv4:127.0.0.1:8081"
    assert parse_endpoint("tcp://[::1]:8081").target == "ipv6:[::1]:8081"
    assert parse_endpoint("tcp://127.0.0.1:8081").socket_path is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("tcp://localhost:8081", "must be an IP address"),
        ("tcp://127.0.0.1", "must include a port"),
        ("tcp://127.0.0.1:8081/path", "must not include a path"),
        ("tcp://user@127.0.0.1:8081", "must not include user info"),
        ("tcp://127.0.0.1:99999", "port"),
        ("unix://host/agent.sock", "must not have an authority"),
        ("unix:", "must include a socket path"),
        ("unix:///a.sock?x=1", "query"),
        ("unix:///a.sock#frag", "fragment"),
        ("/run/spire/agent.sock", "prefix a socket path with unix://"),
        ("http://127.0.0.1:80", "scheme 'http'"),
        ("", "empty"),
    ],
)
def test_bad_addresses_are_refused_naming_the_problem(address, reason) -> None:
    with pytest.raises(InvalidEndpointError, match=reason) as err:
        parse_endpoint(address)
    assert isinstance(err.value, ValueError)


def test_endpoint_comes_from_the_environment_when_not_given(monkeypatch) -> None:
    monkeypatch.setenv("SPIFFE_ENDPOINT_SOCKET", "unix:///tmp/from-env.sock")
    assert resolve_endpoint().socket_path == Path("/tmp/from-env.sock")
    assert resolve_endpoint("unix:///tmp/arg.sock").socket_path == Path("/tmp/arg.sock")


def test_missing_endpoint_names_the_environment_variable(monkeypatch) -> None:
    monkeypatch.delenv("SPIFFE_ENDPOINT_SOCKET", raising=False)
    with pytest.raises(InvalidEndpointError, match="SPIFFE_ENDPOINT_SOCKET"):
        resolve_endpoint()
