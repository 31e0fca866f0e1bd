"""Workload API addresses, as the SPIFFE Workload Endpoint spec defines them.

Accepted: ``unix:///abs/path``, ``unix:path`` (gRPC's form, relative or absolute) and
``tcp://<IP>:<port>``. The spec requires an IP for TCP (no DNS name: resolving a name
would let DNS decide who hands out our identity), so a hostname is refused, as go-spiffe's
``workloadapi.TargetFromAddress`` does.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ._errors import InvalidEndpointError

__all__ = ["SOCKET_ENV", "WorkloadEndpoint", "parse_endpoint", "resolve_endpoint"]

SOCKET_ENV = "SPIFFE_ENDPOINT_SOCKET"


@dataclass(frozen=True)
class WorkloadEndpoint:
    """A validated Workload API address.

    ``address`` is what the user gave, ``target`` what gRPC dials, ``socket_path`` the
    unix socket file (None for TCP), so callers can wait for it to appear.
    """

    address: str
    target: str
    socket_path: Path | None

    def __str__(self) -> str:
        return self.address


def _invalid(address: str, reason: str) -> InvalidEndpointError:
    return InvalidEndpointError(
        f"invalid Workload API address {address!r}: {reason} (expected unix:///path/to/socket, "
        f"unix:path or tcp://<IP>:<port>)",
        endpoint=address,
    )


def parse_endpoint(address: str) -> WorkloadEndpoint:
    """Validate a Workload API address and say exactly what is wrong with a bad one."""
    if not address:
        raise _invalid(address, "it is empty")
    parts = urlsplit(address)
    scheme = parts.scheme
    if parts.query or address.endswith("?"):
        raise _invalid(address, "it must not include a query")
    if parts.fragment or address.endswith("#"):
        raise _invalid(address, "it must not include a fragment")
    if scheme == "unix":
        if parts.netloc:
            raise _invalid(
                address,
                f"a unix URI must not have an authority ({parts.netloc!r}); "
                "use three slashes for an absolute path",
            )
        if not parts.path:
            raise _invalid(address, "a unix URI must include a socket path")
        return WorkloadEndpoint(address, f"unix:{parts.path}", Path(parts.path))
    if scheme == "tcp":
        return _parse_tcp(address)
    if not scheme:
        hint = "; prefix a socket path with unix://" if address.startswith("/") else ""
        raise _invalid(address, f"it has no scheme{hint}")
    raise _invalid(address, f"scheme {scheme!r} is not 'unix' or 'tcp'")


def _parse_tcp(address: str) -> WorkloadEndpoint:
    parts = urlsplit(address)
    if not parts.netloc:
        raise _invalid(address, "a tcp URI must include a host")
    if parts.username is not None or parts.password is not None:
        raise _invalid(address, "a tcp URI must not include user info")
    if parts.path:
        raise _invalid(address, "a tcp URI must not include a path")
    host = parts.hostname or ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError as err:
        raise _invalid(
            address, f"the tcp host must be an IP address, not {host!r} (DNS names are not allowed)"
        ) from err
    try:
        port = parts.port
    except ValueError as err:
        raise _invalid(address, "the tcp port is not a number in 1-65535") from err
    if not port:
        raise _invalid(address, "a tcp URI must include a port")
    if ip.version == 6:
        return WorkloadEndpoint(address, f"ipv6:[{ip}]:{port}", None)
    return WorkloadEndpoint(address, f"ipv4:{ip}:{port}", None)


def resolve_endpoint(address: str | WorkloadEndpoint | None = None) -> WorkloadEndpoint:
    """The endpoint from the argument, else from ``SPIFFE_ENDPOINT_SOCKET``."""
    if isinstance(address, WorkloadEndpoint):
        return address
    if address is None:
        address = os.environ.get(SOCKET_ENV)
        if not address:
            raise InvalidEndpointError(
                f"no Workload API address: pass endpoint=... or set {SOCKET_ENV} "
                "(e.g. unix:///run/spire/sockets/agent.sock)"
            )
    return parse_endpoint(address)
