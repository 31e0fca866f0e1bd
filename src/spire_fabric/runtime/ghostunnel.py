"""ghostunnel, the TLS proxy that gives SPIFFE mTLS to programs without SPIFFE code.

Pinned to one release and built from its Go module through the shared Go build code into
`~/.cache/spire-fabric/ghostunnel-<version>/bin/ghostunnel`, like SPIRE and the test
clusters' programs. Why ghostunnel: it is SPIFFE-native (go-spiffe, `--use-workload-api`),
rotates its certificate from the Workload API without a restart, and its module is served by
the Go module proxy here; Envoy cannot be built or installed on these machines.

How it is built, and why:
- in the module directory with `-mod=mod`: its go.mod has no replace directives, and the
  module zip the proxy serves carries only `vendor/modules.txt`, not the vendored tree (Go
  strips vendor directories from module zips), so `-mod=vendor` cannot work;
- `CGO_ENABLED=1`, although SPIFFE sidecars never use the one cgo part (PKCS#11 key
  storage): v1.8.4 does not build without cgo, because `certloader/pkcs11_disabled.go`'s
  `CertificateFromPKCS11Module` takes one argument fewer than `tls.go` passes. The binary
  links only glibc (PKCS#11 modules are dlopen'ed), which every image here has;
- `-X main.version=v<version>` as upstream's Makefile stamps it, so `ghostunnel --version`
  prints the release and `ensure_ghostunnel` can check it.

CLI (setup and CI log where it comes from):
    python -m spire_fabric.runtime.ghostunnel
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from spire_fabric._run import run
from spire_fabric.errors import SpireFabricError
from spire_fabric.runtime._gobuild import GoProgram, ensure_built, go_env, module_dir, run_go

GHOSTUNNEL_VERSION = "1.8.4"
MODULE = "github.com/ghostunnel/ghostunnel"
BINARY = "ghostunnel"

__all__ = [
    "GHOSTUNNEL_VERSION",
    "GhostunnelError",
    "ensure_ghostunnel",
    "ghostunnel_program",
    "main",
]


class GhostunnelError(SpireFabricError, RuntimeError):
    """ghostunnel could not be provided, or the binary is not the pinned release."""


def _build(version: str, dest: Path, work: Path) -> None:
    src = module_dir(MODULE, version, work)
    ldflags = f"-ldflags=-s -w -X main.version=v{version}"
    env = go_env(CGO_ENABLED="1")
    run_go(["build", "-trimpath", ldflags, "-o", str(dest / BINARY), "."],
           cwd=src, env=env, what=f"go build {MODULE}@v{version}")


def ghostunnel_program(version: str = GHOSTUNNEL_VERSION) -> GoProgram:
    """The cache entry `ghostunnel-<version>` and how to fill it."""
    return GoProgram(BINARY, version.removeprefix("v"), (BINARY,), _build)


def ensure_ghostunnel(say: Callable[[str], None] = print,
                      version: str = GHOSTUNNEL_VERSION) -> Path:
    """Return the path of the pinned ghostunnel binary, building it first if not cached.

    The binary's `--version` must name the release: a cache directory filled by hand with
    another build is refused rather than run.
    """
    binary = ensure_built(ghostunnel_program(version), say) / BINARY
    out = run([str(binary), "--version"], timeout=15.0, what="ghostunnel --version",
              error=GhostunnelError)
    reported = (out.stdout + out.stderr).strip()
    if f"rev v{version.removeprefix('v')} " not in reported + " ":
        raise GhostunnelError(f"{binary} reports {reported!r}, expected ghostunnel "
                              f"v{version}; remove {binary.parent.parent} to rebuild it")
    return binary


def main(argv: Sequence[str] | None = None) -> int:
    """Provide ghostunnel and print its version and path (what `scripts/setup` logs)."""
    del argv
    try:
        binary = ensure_ghostunnel(lambda m: print(m, file=sys.stderr))
    except SpireFabricError as exc:
        print(f"ghostunnel: {exc}", file=sys.stderr)
        return 1
    print(f"ghostunnel v{GHOSTUNNEL_VERSION}: {binary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
