"""A go-spiffe peer for the tests: `gospiffe_verify/main.go` (ours) built against
go-spiffe v2 and asked whether it accepts an X.509-SVID or a JWT-SVID.

Why a Go program: "refused everywhere" after a revocation must hold for peers we did not
write. go-spiffe is what ghostunnel, SPIRE's own tools and most Go services verify SVIDs
with (`x509svid.Verify`, `jwtsvid.ParseAndValidate`); the program does nothing else.

Built through the shared Go build code (`spire_fabric.runtime._gobuild`) into
`~/.cache/spire-fabric/gospiffe-verify-<go-spiffe version>-<source hash>/`: the source's
hash in the version means an edited main.go builds anew and never reuses a stale binary.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from spire_fabric.identity import JwtSvid, SpiffeBundle, X509Svid
from spire_fabric.runtime._gobuild import GoProgram, ensure_built, run_go
from spire_fabric.server import Bundle

GO_SPIFFE_VERSION = "2.6.0"
SOURCE = Path(__file__).parent / "gospiffe_verify" / "main.go"
BINARY = "gospiffe-verify"


def _build(version: str, dest: Path, work: Path) -> None:
    shutil.copy(SOURCE, work / "main.go")
    (work / "go.mod").write_text(
        "module spire-fabric.local/gospiffe-verify\n\ngo 1.24\n\n"
        f"require github.com/spiffe/go-spiffe/v2 v{GO_SPIFFE_VERSION}\n"
    )
    run_go(["mod", "tidy"], cwd=work)
    run_go(["build", "-trimpath", "-ldflags=-s -w", "-o", str(dest / BINARY), "."], cwd=work)


def program() -> GoProgram:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    return GoProgram(BINARY, f"{GO_SPIFFE_VERSION}-{digest}", (BINARY,), _build)


@dataclass(frozen=True)
class Verdict:
    """What the go-spiffe peer said: accepted (exit 0) or refused (exit 1), and its line."""

    accepted: bool
    output: str


class GoSpiffePeer:
    """The built program, holding a set of trust bundles (own and federated) as a go-spiffe
    peer would. ``bundles``: trust domain name -> SPIFFE bundle JSON bytes or PEM bytes."""

    def __init__(self, bundles: dict[str, bytes], say: Callable[[str], None] = print) -> None:
        self.binary = ensure_built(program(), say) / BINARY
        self._dir = Path(tempfile.mkdtemp(prefix="gospiffe-"))
        self._bundle_args: list[str] = []
        for i, (td, data) in enumerate(sorted(bundles.items())):
            path = self._dir / f"bundle-{i}"
            path.write_bytes(data)
            self._bundle_args += ["--bundle", f"{td}={path}"]

    @classmethod
    def holding(cls, bundles: Iterable[Bundle]) -> GoSpiffePeer:
        """A peer holding SPIRE bundles (``get_bundle``, ``get_federated_bundle``), each
        as its SPIFFE bundle JSON, X.509 and JWT authorities alike."""
        return cls({str(b.trust_domain): SpiffeBundle(
            b.trust_domain, tuple(a.certificate for a in b.x509_authorities),
            {a.key_id: a.public_key for a in b.jwt_authorities}).marshal()
            for b in bundles})  # fmt: skip

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> GoSpiffePeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, *args: str) -> Verdict:
        proc = subprocess.run([str(self.binary), *args], capture_output=True, text=True,
                              timeout=30)  # fmt: skip
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"gospiffe-verify exited {proc.returncode}: {proc.stderr.strip()}")
        return Verdict(proc.returncode == 0, proc.stdout.strip())

    def verify_x509(self, svid: X509Svid) -> Verdict:
        """x509svid.Verify of the SVID's chain (leaf first) against the held bundles."""
        path = self._dir / "svid.pem"
        path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                  for c in svid.cert_chain))  # fmt: skip
        return self._run("x509", *self._bundle_args, "--svid", str(path))

    def verify_jwt(self, svid: JwtSvid | str, audience: str) -> Verdict:
        """jwtsvid.ParseAndValidate of the token for ``audience``."""
        path = self._dir / "token"
        path.write_text(svid if isinstance(svid, str) else svid.token)
        return self._run("jwt", *self._bundle_args, "--token", str(path), "--audience", audience)
