"""The test clusters' programs, built from Go modules by `spire_fabric.runtime._gobuild`.

Each part has its own cache directory, named by its version, under
`~/.cache/spire-fabric/`: `kubernetes-<v>` (the five node and control-plane commands plus
the pause binary), `kubectl-<v>`, `etcd-<v>`, `coredns-<v>`, `spire-controller-manager-<v>`,
`kube-network-policies-<v>`.
A part is cached on its own, so adding one (kubectl came later) never rebuilds the others.

Why each route (checked on this machine kind, see docs/kubernetes-test-clusters.md):
- Kubernetes and kubectl: `k8s.io/kubernetes` replaces its ~33 staging modules with
  `./staging/...` paths, which a dependent module cannot follow. A wrapper module requires
  it and replaces each staging module with its published `v0.<minor>.<patch>`; a `tool`
  block keeps the commands' dependencies through `go mod tidy`. Without the
  `-X .../version.gitVersion` stamp the binaries report `v0.0.0-master`. kubectl is the
  same wrapper with `cmd/kubectl` as its tool; Go's build cache makes it ~46 s once
  Kubernetes is built.
- etcd: `go install` refuses modules with replace directives; a one-line wrapper `main`
  calling `etcdmain.Main` builds the real server.
- CoreDNS, spire-controller-manager: no replace directives; built in the module directory.
- kube-network-policies (the NetworkPolicy enforcer of the test clusters): copied out of
  the module cache and built with one substitution, see :func:`build_kube_network_policies`.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from spire_fabric._run import run
from spire_fabric.runtime._gobuild import (
    GoBuildError,
    GoProgram,
    ensure_built,
    module_dir,
    run_go,
)

KUBERNETES_VERSION = "1.37.2"
ETCD_VERSION = "3.6.16"
COREDNS_VERSION = "1.14.7"
SPIRE_CONTROLLER_MANAGER_VERSION = "0.6.3"
KUBE_NETWORK_POLICIES_VERSION = "0.8.0"

KUBE_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)

# The harness's name for a failed build; the same class as the shared module's.
KubeBuildError = GoBuildError


def _staging_replaces(kube_dir: Path) -> list[str]:
    """The staging module paths from kubernetes' own `replace` block."""
    text = (kube_dir / "go.mod").read_text()
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", text, re.M)))


def _go_directive(gomod: Path) -> str:
    m = re.search(r"^go\s+(\S+)", gomod.read_text(), re.M)
    return m.group(1) if m else "1.24"


def _build_kubernetes_commands(version: str, commands: Sequence[str], dest: Path,
                               work: Path) -> Path:
    """Build `k8s.io/kubernetes/cmd/<command>` for each command through the wrapper
    module; return the kubernetes module directory."""
    kube = module_dir("k8s.io/kubernetes", version, work)
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
        *[f"\tk8s.io/kubernetes/cmd/{cmd}" for cmd in commands],
        ")",
        "",
    ]
    (work / "go.mod").write_text("\n".join(lines))
    run_go(["mod", "tidy"], cwd=work)
    # kubectl reads its version from client-go's package, the rest from component-base's.
    stamps = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        stamps += [f"-X {pkg}.gitVersion=v{version}", f"-X {pkg}.gitMajor={major}",
                   f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean"]
    ldflags = "-s -w " + " ".join(stamps)
    pkgs = [f"k8s.io/kubernetes/cmd/{cmd}" for cmd in commands]
    run_go(["build", "-trimpath", f"-ldflags={ldflags}", "-o", f"{dest}{os.sep}", *pkgs],
           cwd=work)
    return kube


def build_kubernetes(version: str, dest: Path, work: Path) -> None:
    kube = _build_kubernetes_commands(version, KUBE_COMMANDS, dest, work)
    # The sandbox ("pause") container's only process, compiled statically like upstream does.
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise KubeBuildError("a C compiler (cc) is needed for the pause binary")
    run([cc, "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{version}-spire-fabric",
         "-o", str(dest / "pause"), str(kube / "build/pause/linux/pause.c")], cwd=work,
        error=KubeBuildError)


def build_kubectl(version: str, dest: Path, work: Path) -> None:
    _build_kubernetes_commands(version, ("kubectl",), dest, work)


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
    run_go(["mod", "tidy"], cwd=work)
    run_go(["build", "-trimpath", "-ldflags=-s -w", "-o", str(dest / "etcd"), "."], cwd=work)


def build_coredns(version: str, dest: Path, work: Path) -> None:
    src = module_dir("github.com/coredns/coredns", version, work)
    run_go(["build", "-trimpath", "-ldflags=-s -w", "-o", str(dest / "coredns"), "."], cwd=src)


def build_spire_controller_manager(version: str, dest: Path, work: Path) -> None:
    src = module_dir("github.com/spiffe/spire-controller-manager", version, work)
    out = str(dest / "spire-controller-manager")
    run_go(["build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd"], cwd=src)


# kube-network-policies hands each new connection to userspace with nftables' `queue`
# expression (nft_queue). This machine's kernel is built without it (CONFIG_NFT_QUEUE is
# not set, and it has no loadable modules) but with nft_compat and the xtables NFQUEUE
# target, which put the packet on the same netfilter queue. So the copy we build says
# `NFQUEUE` (xt_NFQ_info_v3: queue number, 1 queue, bypass flag when fail-open) where
# upstream says `queue`; the policy evaluation, the verdicts and every other rule are
# v0.8.0's own. The build fails loudly if upstream's lines are no longer there.
_KNP_QUEUE_HELPER = """package networkpolicy

import (
\t"github.com/google/nftables/expr"
\t"github.com/google/nftables/xt"
)

// nfqueueTarget is the xtables NFQUEUE target (revision 3) through nft_compat: the same
// netfilter queue as nftables' queue expression, for kernels built without nft_queue.
func nfqueueTarget(num uint16, bypass bool) *expr.Target {
\tvar flags byte
\tif bypass {
\t\tflags = 1 // NFQ_FLAG_BYPASS
\t}
\tinfo := xt.Unknown{byte(num), byte(num >> 8), 1, 0, flags, 0, 0, 0}
\treturn &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info}
}
"""
_KNP_SUBSTITUTIONS = {
    "pkg/networkpolicy/controller.go": (
        re.compile(r"queue := &expr\.Queue\{Num: uint16\(c\.config\.QueueID\)\}\n"
                   r"\s*if c\.config\.FailOpen \{\n\s*queue\.Flag = expr\.QueueFlagBypass\n\s*\}"),
        "queue := nfqueueTarget(uint16(c.config.QueueID), c.config.FailOpen)",
        2,
    ),
    "pkg/networkpolicy/dnsagent.go": (
        re.compile(r"&expr\.Queue\{Num: uint16\(n\.nfQueueID\), Flag: expr\.QueueFlagBypass\}"),
        "nfqueueTarget(uint16(n.nfQueueID), true)",
        1,
    ),
}


def substitute_nfqueue(tree: Path, version: str) -> None:
    """In a writable copy of the module: the xtables NFQUEUE target for each nftables
    queue expression, or a KubeBuildError naming the file whose lines are not upstream's."""
    for rel, (pattern, replacement, count) in _KNP_SUBSTITUTIONS.items():
        file = tree / rel
        text, n = pattern.subn(replacement, file.read_text())
        if n != count:
            raise KubeBuildError(f"kube-network-policies {version}: expected {count} nftables "
                                 f"queue expression(s) in {rel}, found {n}")
        file.write_text(text)
    (tree / "pkg/networkpolicy/zz_nfqueue_target.go").write_text(_KNP_QUEUE_HELPER)


def build_kube_network_policies(version: str, dest: Path, work: Path) -> None:
    src = module_dir("sigs.k8s.io/kube-network-policies", version, work)
    tree = work / "kube-network-policies"
    shutil.copytree(src, tree)
    for path in tree.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the module cache's copy is read-only
    substitute_nfqueue(tree, version)
    out = str(dest / "kube-network-policies")
    run_go(["build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd"], cwd=tree)


PARTS: dict[str, GoProgram] = {
    "etcd": GoProgram("etcd", ETCD_VERSION, ("etcd",), build_etcd),
    "kubernetes": GoProgram(
        "kubernetes", KUBERNETES_VERSION, (*KUBE_COMMANDS, "pause"), build_kubernetes
    ),
    "kubectl": GoProgram("kubectl", KUBERNETES_VERSION, ("kubectl",), build_kubectl),
    "coredns": GoProgram("coredns", COREDNS_VERSION, ("coredns",), build_coredns),
    "spire-controller-manager": GoProgram(
        "spire-controller-manager",
        SPIRE_CONTROLLER_MANAGER_VERSION,
        ("spire-controller-manager",),
        build_spire_controller_manager,
    ),
    "kube-network-policies": GoProgram(
        "kube-network-policies",
        KUBE_NETWORK_POLICIES_VERSION,
        ("kube-network-policies",),
        build_kube_network_policies,
    ),
}


def ensure_part(name: str, say: Callable[[str], None] = print) -> Path:
    """Return the bin directory of a built part, building it first if it is not cached."""
    return ensure_built(PARTS[name], say)


def kubectl_built() -> bool:
    return PARTS["kubectl"].is_built()


def kubectl_path(say: Callable[[str], None] = print) -> Path:
    """kubectl of the clusters' Kubernetes version, built first if it is not cached."""
    return ensure_part("kubectl", say) / "kubectl"


def main(argv: Sequence[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or list(PARTS)
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        print(f"kube-build: unknown part(s) {unknown}; known: {list(PARTS)}", file=sys.stderr)
        return 2
    try:
        for name in names:
            ensure_part(name, lambda m: print(m, flush=True))
    except KubeBuildError as exc:
        print(f"kube-build: {exc}", file=sys.stderr)
        return 1
    for name in names:
        part = PARTS[name]
        print(f"kube-build: {part.name} {part.version}: {part.bin_dir}")
    return 0
