"""The topology's CA hierarchy on the installer's machine, in one file layout for every target.

Why on the installer's machine: the offline Enterprise Root CA's key never enters a cluster
or a server; only the intermediates a server signs with leave this directory (locally as
files its disk UpstreamAuthority reads, on Kubernetes as a Secret).

Generations: ``deploy rotate root`` makes a new root and new intermediates. The files at
the top of the directory are always the *current* generation (what `up` renders and
places); each generation is also kept in ``gen-<n>/`` and ``generations.json`` says which
is current, which is being made (``next``) and which old one is kept until its root is
revoked (``previous``), so a rotation that crashed resumes with the same keys.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spire_fabric.runtime.ca_hierarchy import (
    CaFiles,
    CertificateAuthority,
    SigningCa,
    create_root_ca,
    issue_intermediate_ca,
    load_ca,
    write_ca,
)
from spire_fabric.runtime.deployment import Change
from spire_fabric.topology import DiskUpstreamAuthority, Server, Topology

__all__ = ["CaStore", "Generations", "SigningCa"]

GENERATIONS_FILE = "generations.json"


@dataclass(frozen=True)
class Generations:
    """Which CA generation is current, which a root rotation is making, which old one is
    kept until its root is revoked (generation 1 is what `up` made)."""

    current: int = 1
    next: int | None = None
    previous: int | None = None


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

    def trusted_roots(self, topology: Topology) -> list[x509.Certificate]:
        """Every root an external client should trust now: the current one and, during a
        root rotation, the next (it is in the bundles before anything is signed under it)
        and the previous (until its generation is retired, SVIDs may still chain to it).
        Why not just :meth:`root`: a client that trusts only the current root fails from
        the moment a server signs under the new one until it re-reads its anchor."""
        gens = self.generations()
        roots: list[x509.Certificate] = []
        for store in (self, *(self.generation(n) for n in (gens.next, gens.previous) if n)):
            ca = store.root(topology)
            if ca is not None and ca.certificate not in roots:
                roots.append(ca.certificate)
        return roots

    def root_as_signing_ca(self, topology: Topology) -> SigningCa:
        """The root itself as a server's signing CA: what SPIRE 1.13.3 needs for one
        rotation of the X.509 authority, so that ``upstreamauthority taint`` can name the
        root (it only accepts the key that signed the old authority directly; see
        :mod:`spire_fabric.runtime.core.root_rotation`)."""
        root = self.root(topology)
        assert root is not None and topology.ca is not None
        files = self.files(topology.ca.root.name)
        pem = root.certificate.public_bytes(serialization.Encoding.PEM)
        return SigningCa(chain=pem, key=files.key_path.read_bytes(), root=pem)

    # ---- generations (deploy rotate root) ----------------------------------------------

    def generations(self) -> Generations:
        """The recorded generations (a store never rotated: generation 1, current)."""
        path = self.directory / GENERATIONS_FILE
        if not path.exists():
            return Generations()
        return Generations(**json.loads(path.read_text()))

    def generation(self, n: int) -> CaStore:
        """The store of generation ``n`` (its own directory, same file names)."""
        return CaStore(self.directory / f"gen-{n}")

    def begin_generation(self, topology: Topology) -> int:
        """Make the next generation (new root, new intermediates) beside the current one,
        which is first kept as it is; idempotent: a generation under way is returned."""
        gens = self.generations()
        if gens.next is not None:
            return gens.next
        if gens.previous is not None:
            raise ValueError(
                f"generation {gens.previous} is still kept (its root is not revoked); "
                "finish that rotation first"
            )
        self._copy(self, self.generation(gens.current), topology)
        n = gens.current + 1
        target = self.generation(n)
        if target.directory.exists():
            shutil.rmtree(target.directory)  # half made by a crash: made again, never used
        target.ensure(topology)
        self._save(Generations(gens.current, n, None))
        return n

    def promote(self, topology: Topology) -> None:
        """The next generation becomes current (its files at the top); the old one is kept
        as ``previous`` until :meth:`retire`."""
        gens = self.generations()
        if gens.next is None:
            return
        self._copy(self.generation(gens.next), self, topology)
        self._save(Generations(gens.next, None, gens.current))

    def retire(self) -> None:
        """Forget the previous generation (its root is revoked): its keys are deleted."""
        gens = self.generations()
        if gens.previous is None:
            return
        shutil.rmtree(self.generation(gens.previous).directory, ignore_errors=True)
        self._save(Generations(gens.current, gens.next, None))

    def _names(self, topology: Topology) -> list[str]:
        ca = topology.ca
        assert ca is not None
        return [ca.root.name, *(i.name for i in ca.intermediates)]

    def _copy(self, source: CaStore, target: CaStore, topology: Topology) -> None:
        target.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in self._names(topology):
            src, dst = source.files(name), target.files(name)
            for a, b in ((src.cert_path, dst.cert_path), (src.key_path, dst.key_path),
                         (src.bundle_path, dst.bundle_path)):  # fmt: skip
                _copy_atomic(a, b)

    def _save(self, gens: Generations) -> None:
        path = self.directory / GENERATIONS_FILE
        tmp = path.with_name(f".{GENERATIONS_FILE}.tmp")
        tmp.write_text(json.dumps(asdict(gens)))
        os.replace(tmp, path)


def _copy_atomic(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copy2(source, tmp)
    os.replace(tmp, target)
