"""Turn Workload API answers into the files of the spiffe-helper contract, and write them.

- `svid.pem`: the default X509-SVID's chain, leaf first (what a TLS server presents);
- `svid_key.pem`: its private key, PKCS#8 PEM, mode 0600 by default;
- `svid_bundle.pem`: the X.509 authorities of the SVID's own trust domain, and with
  `--include-federated` those of every federated trust domain after them (one PEM file,
  as spiffe-helper's `include_federated_domains` does: a TLS verifier that takes one CA
  file then trusts the federated peers too);
- a JWT-SVID per asked audience (the token, one line), and the JWT bundles as one JSON
  object `{trust domain: JWKS}` when asked.

Each file is replaced atomically with its mode (`spire_fabric._atomic.write_atomic`) and
only when its bytes change, so a bundle-only update does not look like a new SVID. The
order is bundle, key, chain: a program that reloads on the chain's change finds the key that
matches it already in place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from spire_fabric._atomic import write_atomic
from spire_fabric.identity import BundleSet, JwtBundle, JwtSvid, X509Svid
from spire_fabric.workload import X509Context

from ._config import HelperConfig

__all__ = ["Written", "jwt_bundle_files", "jwt_svid_files", "write_files", "x509_files"]


@dataclass(frozen=True)
class FileContent:
    name: str
    data: bytes
    mode: int


@dataclass(frozen=True)
class Written:
    """What one write did: the files whose bytes changed (names inside the cert dir)."""

    changed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.changed)


def x509_files(config: HelperConfig, context: X509Context) -> tuple[FileContent, ...]:
    """The bundle, key and chain files for the context's default SVID."""
    svid: X509Svid = context.default_svid
    own = svid.spiffe_id.trust_domain
    bundle = context.bundles.get(own)
    if bundle is None:
        # The Workload API spec requires the SVID's own bundle; an agent that omits it is
        # broken, and an empty CA file would make every peer untrusted without saying why.
        raise ValueError(f"the Workload API sent no bundle for {own}, the SVID's own trust "
                         "domain")
    pem = bundle.to_pem()
    if config.include_federated:
        for td in sorted(context.bundles, key=str):
            if td != own:
                pem += context.bundles[td].to_pem()
    return (
        FileContent(config.bundle_file, pem, config.cert_mode),
        FileContent(config.key_file, svid.private_key_pem(), config.key_mode),
        FileContent(config.svid_file, svid.cert_chain_pem(), config.cert_mode),
    )


def jwt_svid_files(config: HelperConfig, svids: dict[str, JwtSvid]) -> tuple[FileContent, ...]:
    """One token file per audience (`svids` maps audience to its JWT-SVID)."""
    return tuple(FileContent(j.file, (svids[j.audience].token + "\n").encode(), config.jwt_mode)
                 for j in config.jwt_svids if j.audience in svids)  # fmt: skip


def jwt_bundle_files(config: HelperConfig,
                     bundles: BundleSet[JwtBundle]) -> tuple[FileContent, ...]:
    """The JWT bundles as `{trust domain: JWKS}`, sorted, if a file is asked for."""
    if config.jwt_bundle_file is None:
        return ()
    doc = {str(b.trust_domain): json.loads(b.to_jwks()) for b in bundles}
    data = (json.dumps(dict(sorted(doc.items())), indent=2) + "\n").encode()
    return (FileContent(config.jwt_bundle_file, data, config.cert_mode),)


def write_files(cert_dir: Path, files: tuple[FileContent, ...]) -> Written:
    """Write each file whose bytes or mode differ from what is on disk, in order."""
    changed = []
    for f in files:
        path = cert_dir / f.name
        try:
            same = path.read_bytes() == f.data and (path.stat().st_mode & 0o7777) == f.mode
        except OSError:
            same = False
        if not same:
            write_atomic(path, f.data, f.mode)
            changed.append(f.name)
    return Written(tuple(changed))
