"""Where the client connects and how: the local API socket, or TCP with an admin X.509-SVID.

Over TCP the server is authenticated as `spiffe://<td>/spire/server` by `_tunnel`
(gRPC Python cannot verify a SPIFFE ID itself; that module says why and what is
checked). `<td>` is `server_trust_domain`, or the admin SVID's own trust domain.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography import x509

from spire_fabric.identity import (
    SpiffeId,
    TrustDomain,
    X509BundleSource,
    X509SvidSource,
    spire_server_id,
)
from spire_fabric.server._errors import SpireClientConfigError
from spire_fabric.server._models import trust_domain_arg
from spire_fabric.server._tunnel import SpiffeTlsTunnel, client_context

_MiB = 1024 * 1024

# Reconnect quickly after a server restart: gRPC's defaults back off to 2 minutes.
_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", 64 * _MiB),
    ("grpc.max_send_message_length", 64 * _MiB),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),  # retries are ours (tenacity), with per-method rules
)


# The admin SVID and the server's bundle come from the one pair of source protocols
# (spire_fabric.identity): an X509Svid and an X509Bundle serve as their own sources.
X509BundleSourceLike = X509BundleSource  # the old name, for older imports


@dataclass(frozen=True)
class ChannelSpec:
    """Everything needed to open one channel; `tunnel` carries TCP connections, if any."""

    target: str
    options: tuple[tuple[str, Any], ...]
    tunnel: SpiffeTlsTunnel | None = None

    def close(self) -> None:
        if self.tunnel is not None:
            self.tunnel.close()


def is_unix(address: str) -> bool:
    """`unix:...`, an absolute or relative path, or anything without a `:port`."""
    return address.startswith(("unix:", "/", ".")) or ":" not in address


def unix_target(address: str) -> str:
    if address.startswith("unix://"):
        path = address[len("unix://") :]
    elif address.startswith("unix:"):
        path = address[len("unix:") :]
    else:
        path = address
    if not path.startswith("/"):
        path = os.path.abspath(path)
    return f"unix://{path}"


def build_channel_spec(
    address: str,
    *,
    svid_source: X509SvidSource | None,
    bundle_source: X509BundleSource | None,
    server_trust_domain: TrustDomain | str | None,
) -> ChannelSpec:
    if not address:
        raise SpireClientConfigError("address is empty; give 'unix:///path/api.sock' or host:port")
    if is_unix(address):
        if svid_source is not None or bundle_source is not None:
            raise SpireClientConfigError(
                "svid_source/bundle_source are for TCP addresses; the local socket "
                f"{address!r} is authenticated by the file system"
            )
        return ChannelSpec(unix_target(address), _CHANNEL_OPTIONS)
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SpireClientConfigError(
            f"address {address!r} is neither a unix socket ('unix:///path', '/path') nor host:port"
        )
    if svid_source is None or bundle_source is None:
        raise SpireClientConfigError(
            f"TCP address {address!r} needs svid_source (an admin X.509-SVID) and "
            "bundle_source (to authenticate the server); the TCP API refuses anonymous "
            "admin calls"
        )
    return tls_channel_spec(address, svid_source, bundle_source, server_trust_domain)


def tls_channel_spec(
    address: str,
    svid_source: X509SvidSource,
    bundle_source: X509BundleSource,
    server_trust_domain: TrustDomain | str | None,
) -> ChannelSpec:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    first_chain = list(svid_source.get_x509_svid().cert_chain)
    if not first_chain:
        raise SpireClientConfigError("svid_source returned an SVID with an empty cert_chain")
    if server_trust_domain is None:
        td = _trust_domain_of(first_chain[0])
    else:
        td = trust_domain_arg(server_trust_domain, "server_trust_domain")

    def make_context() -> ssl.SSLContext:
        svid = svid_source.get_x509_svid()
        bundle = bundle_source.get_x509_bundle_for_trust_domain(td)
        roots = list(getattr(bundle, "x509_authorities", None) or [])
        if not roots:
            raise SpireClientConfigError(
                f"bundle_source has no X.509 authorities for trust domain {td}; cannot "
                "authenticate the server"
            )
        return client_context(list(svid.cert_chain), svid.private_key, roots)

    make_context()  # fail now, with a clear message, if the sources are unusable
    tunnel = SpiffeTlsTunnel((host, int(port)), spire_server_id(td), make_context)
    return ChannelSpec(tunnel.target, _CHANNEL_OPTIONS, tunnel)


def _trust_domain_of(leaf: x509.Certificate) -> TrustDomain:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        return SpiffeId.parse(uris[0]).trust_domain
    except (x509.ExtensionNotFound, IndexError, ValueError) as err:
        raise SpireClientConfigError(
            f"svid_source's leaf certificate carries no SPIFFE ID ({err}); pass "
            "server_trust_domain explicitly"
        ) from err


def open_sync(spec: ChannelSpec) -> grpc.Channel:
    return grpc.insecure_channel(spec.target, options=spec.options)


def open_aio(spec: ChannelSpec) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(spec.target, options=spec.options)
