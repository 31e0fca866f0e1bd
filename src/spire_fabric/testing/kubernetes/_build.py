"""Build the Kubernetes test clusters' binaries from Go modules, cached by version.

Each part has its own cache directory, named by its version, under
`~/.cache/spire-fabric/` (XDG_CACHE_HOME honoured): `kubernetes-<v>` (the five node and
control-plane commands plus the pause binary), `etcd-<v>`, `coredns-<v>`,
`spire-controller-manager-<v>`. A version bump therefore builds into a new directory. A part
is built in a staging directory beside its cache directory and renamed into place under a
file lock, so concurrent callers never see half a build; a `built.json` stamp records what
was built and how long it took.

Why each route (checked on this machine kind, see docs/kubernetes-test-clusters.md):
- Kubernetes: `k8s.io/kubernetes` replaces its ~33 staging modules with `./staging/...`
  paths, which a dependent module cannot follow. A wrapper module requires it and replaces
  each staging module with its published `v0.<minor>.<patch>`; a `tool` block keeps the five
  commands' dependencies through `go mod tidy`. Without the `-X .../version.gitVersion`
  stamp the binaries report `v0.0.0-master`.
- etcd: `go install` refuses modules with replace directives; a one-line wrapper `main`
  calling `etcdmain.Main` builds the real server.
- CoreDNS, spire-controller-manager: no replace directives; built in the module directory.

CLI (scripts/kube-clusters build and scripts/setup use it):
    python -m spire_fabric.testing.kubernetes._build [PART ...]
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from spire_fabric.errors import SpireFabricError

KUBERNETES_VERSION = "1.37.2"
ETCD_VERSION = "3.6.16"
COREDNS_VERSION = "1.14.7"
SPIRE_CONTROLLER_MANAGER_VERSION = "0.6.3"

KUBE_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)
_BUILD_TIMEOUT_S = 3600.0
_TAIL_LINES = 12


class KubeBuildError(SpireFabricError, RuntimeError):
    """A part could not be built; the message names the step and the tail of its output."""


@dataclass(frozen=True)
class Part:
    name: str
    version: str
    binaries: tuple[str, ...]
    build: Callable[[str, Path, Path], None]  # (version, staging bin dir, work dir)

    @property
    def cache_dir(self) -> Path:
        return cache_root() / f"{self.name}-{self.version}"

    @property
    def bin_dir(self) -> Path:
        return self.cache_dir / "bin"

    def is_built(self) -> bool:
        stamp = self.cache_dir / "built.json"
        if not stamp.is_file():
            return False
        try:
            data = json.loads(stamp.read_text())
        except (OSError, ValueError):
            return False
        return data.get("version") == self.version and all(
            os.access(self.bin_dir / b, os.X_OK) for b in self.binaries
        )


def cache_root() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "spire-fabric"


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise KubeBuildError("`go` is not on PATH")
    return go


def _env(**extra: str) -> dict[str, str]:
    flags = f"{os.environ.get('GOFLAGS', '')} -mod=mod".strip()
    return {**os.environ, "GOFLAGS": flags, **extra}


def _run(cmd: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(
            list(cmd),
            cwd=cwd,
            env=env if env is not None else _env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KubeBuildError(f"{' '.join(cmd[:3])}: {exc}") from exc
    if proc.returncode != 0:
        out = (proc.stderr or proc.stdout).strip().splitlines()
        tail = " | ".join(line for line in out[-_TAIL_LINES:] if line.strip())
        raise KubeBuildError(f"{' '.join(cmd[:3])} (exit {proc.returncode}): {tail}")
    return proc.stdout


def _module_dir(path: str, version: str, work: Path) -> Path:
    out = _run([_go(), "mod", "download", "-json", f"{path}@v{version}"], cwd=work)
    info = json.loads(out)
    if info.get("Error") or not info.get("Dir"):
        raise KubeBuildError(f"go mod download {path}@v{version}: {info.get('Error')}")
    return Path(info["Dir"])


def _staging_replaces(kube_dir: Path) -> list[str]:
    """The staging module paths from kubernetes' own `replace` block."""
    text = (kube_dir / "go.mod").read_text()
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", text, re.M)))


def _go_directive(gomod: Path) -> str:
    m = re.search(r"^go\s+(\S+)", gomod.read_text(), re.M)
    return m.group(1) if m else "1.24"


def build_kubernetes(version: str, dest: Path, work: Path) -> None:
    kube = _module_dir("k8s.io/kubernetes", version, work)
    staging_version = "v0." + version.split(".", 1)[1]
    major, minor = version.split(".")[:2]
    lines = [
        "module spire-fabric.local/kubernetes",
        "",
        f"go {_go_directive(kube / 'go.mod')}",
        "",
        f"require k8s.io/kubernetes v{version}",
        "",
        "replace (",
        *[f"\t{mod} => {mod} {staging_version}" for mod in _staging_replaces(kube)],
        ")",
        "",
        "tool (",
        *[f"\tk8s.io/kubernetes/cmd/{cmd}" for cmd in KUBE_COMMANDS],
        ")",
        "",
    ]
    (work / "go.mod").write_text("\n".join(lines))
    _run([_go(), "mod", "tidy"], cwd=work)
    pkg = "k8s.io/component-base/version"
    ldflags = (
        f"-s -w -X {pkg}.gitVersion=v{version} -X {pkg}.gitMajor={major} "
        f"-X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
    )
    cmds = [f"k8s.io/kubernetes/cmd/{cmd}" for cmd in KUBE_COMMANDS]
    _run([_go(), "build", "-trimpath", f"-ldflags={ldflags}", "-o", f"{dest}{os.sep}", *cmds],
         cwd=work)
    # The sandbox ("pause") container's only process, compiled statically like upstream does.
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise KubeBuildError("a C compiler (cc) is needed for the pause binary")
    _run([cc, "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{version}-spire-fabric",
          "-o", str(dest / "pause"), str(kube / "build/pause/linux/pause.c")], cwd=work)


def build_etcd(version: str, dest: Path, work: Path) -> None:
    (work / "go.mod").write_text(
        f"module spire-fabric.local/etcd\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 "
        f"v{version}\n"
    )
    (work / "main.go").write_text(
        "// etcd's own entry point; the wrapper exists because go install refuses etcd's\n"
        "// replace directives.\npackage main\n\nimport (\n\t\"os\"\n\n"
        "\t\"go.etcd.io/etcd/server/v3/etcdmain\"\n)\n\n"
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    _run([_go(), "mod", "tidy"], cwd=work)
    _run([_go(), "build", "-trimpath", "-ldflags=-s -w", "-o", str(dest / "etcd"), "."],
         cwd=work)


def build_coredns(version: str, dest: Path, work: Path) -> None:
    src = _module_dir("github.com/coredns/coredns", version, work)
    _run([_go(), "build", "-trimpath", "-ldflags=-s -w", "-o", str(dest / "coredns"), "."],
         cwd=src)


def build_spire_controller_manager(version: str, dest: Path, work: Path) -> None:
    src = _module_dir("github.com/spiffe/spire-controller-manager", version, work)
    out = str(dest / "spire-controller-manager")
    _run([_go(), "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd"], cwd=src)


PARTS: dict[str, Part] = {
    "etcd": Part("etcd", ETCD_VERSION, ("etcd",), build_etcd),
    "kubernetes": Part(
        "kubernetes", KUBERNETES_VERSION, (*KUBE_COMMANDS, "pause"), build_kubernetes
    ),
    "coredns": Part("coredns", COREDNS_VERSION, ("coredns",), build_coredns),
    "spire-controller-manager": Part(
        "spire-controller-manager",
        SPIRE_CONTROLLER_MANAGER_VERSION,
        ("spire-controller-manager",),
        build_spire_controller_manager,
    ),
}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_part(name: str, say: Callable[[str], None] = print) -> Path:
    """Return the bin directory of a built part, building it first if it is not cached."""
    part = PARTS[name]
    if part.is_built():
        return part.bin_dir
    with _locked(cache_root() / f".{part.name}-{part.version}.lock"):
        if part.is_built():
            return part.bin_dir
        staging = cache_root() / f".{part.name}-{part.version}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "bin").mkdir(parents=True)
        (staging / "work").mkdir()
        say(f"kube-build: building {part.name} {part.version} (cold: minutes)")
        t0 = time.monotonic()
        try:
            part.build(part.version, staging / "bin", staging / "work")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        seconds = round(time.monotonic() - t0, 1)
        shutil.rmtree(staging / "work", ignore_errors=True)
        stamp = {"version": part.version, "binaries": list(part.binaries), "seconds": seconds}
        (staging / "built.json").write_text(json.dumps(stamp, indent=2) + "\n")
        shutil.rmtree(part.cache_dir, ignore_errors=True)
        staging.rename(part.cache_dir)
        say(f"kube-build: built {part.name} {part.version} in {seconds} s")
    return part.bin_dir


def ensure_all(names: Sequence[str] = tuple(PARTS), say: Callable[[str], None] = print) -> None:
    for name in names:
        ensure_part(name, say)


def main(argv: Sequence[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or list(PARTS)
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        print(f"kube-build: unknown part(s) {unknown}; known: {list(PARTS)}", file=sys.stderr)
        return 2
    try:
        ensure_all(names, lambda m: print(m, flush=True))
    except KubeBuildError as exc:
        print(f"kube-build: {exc}", file=sys.stderr)
        return 1
    for name in names:
        part = PARTS[name]
        print(f"kube-build: {part.name} {part.version}: {part.bin_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
