"""The topology's CA hierarchy on the installer's machine, in one file layout for every target.

Why on the installer's machine: the offline Enterprise Root CA's key never enters a cluster
or a server; only the intermediates a server signs with leave this directory (locally as
files its disk UpstreamAuthority reads, on Kubernetes as a Secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from spire_fabric.runtime.ca_hierarchy import (
    CaFiles,
    CertificateAuthority,
    create_root_ca,
    issue_intermediate_ca,
    load_ca,
    write_ca,
)
from spire_fabric.runtime.deployment import Change
from spire_fabric.topology import DiskUpstreamAuthority, Server, Topology

__all__ = ["CaStore", "SigningCa"]


@dataclass(frozen=True)
class SigningCa:
    """What a server's disk UpstreamAuthority needs, as PEM: its intermediate (with the
    chain below the root), the intermediate's key, and the root for the trust bundle."""

    chain: bytes
    key: bytes
    root: bytes


class CaStore:
    """``<dir>/<name>.crt|.key|-bundle.crt`` for the root and each intermediate."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def files(self, name: str) -> CaFiles:
        d = self.directory
        return CaFiles(d / f"{name}.crt", d / f"{name}.key", d / f"{name}-bundle.crt")

    def changes(self, topology: Topology) -> list[Change]:
        """The CAs `up` would create (none once they exist: a CA is never replaced)."""
        ca = topology.ca
        if ca is None:
            return []
        names = [(ca.root.name, ca.root.common_name)]
        names += [(i.name, i.common_name) for i in ca.intermediates]
        return [
            Change("create", "ca", name, common_name)
            for name, common_name in names
            if not self.files(name).key_path.exists()
        ]

    def ensure(self, topology: Topology) -> dict[str, CaFiles]:
        """Create the hierarchy once; later calls load what is on disk."""
        ca = topology.ca
        if ca is None:
            return {}
        root = self._root(topology)
        files = {ca.root.name: self.files(ca.root.name)}
        for inter in ca.intermediates:
            inter_files = self.files(inter.name)
            if not inter_files.key_path.exists():
                issued = issue_intermediate_ca(
                    root, inter.trust_domain, common_name=inter.common_name, ttl=inter.ttl
                )
                write_ca(issued, self.directory, inter.name)
            files[inter.name] = inter_files
        return files

    def root(self, topology: Topology) -> CertificateAuthority | None:
        """The root as it is on disk (None before `up` made it)."""
        if topology.ca is None:
            return None
        files = self.files(topology.ca.root.name)
        return load_ca(files) if files.key_path.exists() else None

    def signing_ca(self, topology: Topology, server: Server) -> SigningCa | None:
        """The PEMs of ``server``'s disk UpstreamAuthority (None if it has none, or if the
        hierarchy is not made yet: `plan` writes nothing)."""
        ua = server.upstream_authority
        if topology.ca is None or not isinstance(ua, DiskUpstreamAuthority):
            return None
        files = self.files(ua.ca)
        root = self.root(topology)
        if root is None or not files.key_path.exists():
            return None
        return SigningCa(
            chain=files.cert_path.read_bytes(),
            key=files.key_path.read_bytes(),
            root=root.certificate.public_bytes(serialization.Encoding.PEM),
        )

    def _root(self, topology: Topology) -> CertificateAuthority:
        ca = topology.ca
        assert ca is not None
        existing = self.root(topology)
        if existing is not None:
            return existing
        root = create_root_ca(ca.root.common_name, ttl=ca.root.ttl)
        write_ca(root, self.directory, ca.root.name)
        return root
