"""The Secrets only the installer can fill: database passwords and TLS certificates, each
server's signing CA, join tokens. Rendered here like every other object, with the values passed in.

Why values are passed in and not made here: rendering is pure and deterministic; the
passwords are random and the CA keys live on the installer's machine. Without values
(a topology rendered for review) each Secret is a skeleton with no data, and `up` fills
it; with the values an installer recorded (``deploy render --state-dir``) the files
applied in order make the same objects as `up`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from spire_fabric.render.kubernetes._agents import join_token_secret_name
from spire_fabric.render.kubernetes._common import TLS_SECRET, Obj, secret
from spire_fabric.render.kubernetes._mysql import (
    DatastoreTlsPem,
    mysql_instance,
    mysql_secret,
    mysql_tls_secret,
)
from spire_fabric.render.kubernetes._servers import upstream_ca_secret_name
from spire_fabric.topology import Agent, DiskUpstreamAuthority, Server, Topology

__all__ = [
    "DatastoreTlsPem",
    "InstallerSecrets",
    "MySqlPasswords",
    "SigningCaPem",
    "join_token_secret",
    "render_installer_secrets",
    "upstream_ca_secret",
]


@dataclass(frozen=True)
class MySqlPasswords:
    """The database user's and MySQL root's passwords of one server's MySQL."""

    password: str
    root_password: str


@dataclass(frozen=True)
class SigningCaPem:
    """A server's disk UpstreamAuthority as PEM: its intermediate (chain below the root),
    the intermediate's key, the root for the trust bundle."""

    chain: bytes
    key: bytes
    root: bytes


@dataclass(frozen=True)
class InstallerSecrets:
    """Values by server (MySQL, its TLS, signing CA) and by agent (join token)."""

    mysql: Mapping[str, MySqlPasswords] = field(default_factory=dict)
    mysql_tls: Mapping[str, DatastoreTlsPem] = field(default_factory=dict)
    signing_cas: Mapping[str, SigningCaPem] = field(default_factory=dict)
    join_tokens: Mapping[str, str] = field(default_factory=dict)


def upstream_ca_secret(topology: Topology, server: Server, pem: SigningCaPem | None) -> Obj:
    """The Secret ``server``'s disk UpstreamAuthority reads (tls.crt, tls.key, bundle.crt):
    made by `up`, and again by `rotate root` for each CA it places."""
    k = server.kubernetes
    assert k is not None
    data = None if pem is None else {"tls.crt": pem.chain, "tls.key": pem.key,
                                     "bundle.crt": pem.root}  # fmt: skip
    return secret(topology, k.cluster, upstream_ca_secret_name(server), k.namespace,
                  app=server.name, component="upstream-ca", data=data,
                  secret_type=TLS_SECRET)  # fmt: skip


def join_token_secret(topology: Topology, agent: Agent, token: str | None) -> Obj:
    """The Secret a join_token agent reads its one-time token from (key ``token``)."""
    k = agent.kubernetes
    assert k is not None
    data = None if token is None else {"token": token.encode()}
    return secret(topology, k.cluster, join_token_secret_name(agent), k.namespace,
                  app=agent.name, component="join-token", data=data)  # fmt: skip


def render_installer_secrets(
    topology: Topology, cluster: str, values: InstallerSecrets | None
) -> list[Obj]:
    """The MySQL (passwords, TLS) and signing-CA Secrets of the servers in ``cluster``."""
    v = values or InstallerSecrets()
    out: list[Obj] = []
    for s in topology.servers:
        if s.kubernetes is None or s.kubernetes.cluster != cluster:
            continue
        if mysql_instance(s) is not None:
            pw = v.mysql.get(s.name)
            out.append(
                mysql_secret(topology, s, password=pw.password, root_password=pw.root_password)
                if pw is not None
                else mysql_secret(topology, s)
            )
            tls = v.mysql_tls.get(s.name)
            out.append(
                mysql_tls_secret(topology, s, cert=tls.cert, key=tls.key, ca=tls.ca)
                if tls is not None
                else mysql_tls_secret(topology, s)
            )
        if topology.ca is not None and isinstance(s.upstream_authority, DiskUpstreamAuthority):
            out.append(upstream_ca_secret(topology, s, v.signing_cas.get(s.name)))
    return out
