"""`scripts/kube-clusters up|down|status|build|images|leftovers|deploy-args|kubectl`
(`python -m kube_harness` with tests/ and src/ on PYTHONPATH)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from kube_harness import _build, _images, _installer, _lifecycle, _plan, _teardown
from spire_fabric._run import CommandError


def _with_node_counts(items: list[str]) -> tuple[_plan.ClusterSpec, ...]:
    """The default clusters with the node counts given as `CLUSTER=N` overriding theirs."""
    counts: dict[str, int] = {}
    for item in items:
        name, sep, n = item.partition("=")
        spec = next((c for c in _plan.CLUSTERS if name in (c.name, c.short)), None)
        if not sep or spec is None or not n.isdigit():
            raise _plan.KubeClusterError(
                f"--nodes {item!r}: expected CLUSTER=N with CLUSTER one of "
                + ", ".join(c.name for c in _plan.CLUSTERS) + " (or up/down)")
        counts[spec.name] = int(n)
    return tuple(dataclasses.replace(c, nodes=counts.get(c.name, c.nodes))
                 for c in _plan.CLUSTERS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kube-clusters", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "build", "images",
                                            "leftovers", "deploy-args", "kubectl"])
    parser.add_argument("names", nargs="*", help="build/images: which parts (default all)")
    parser.add_argument(
        "--nodes", action="append", default=[], metavar="CLUSTER=N",
        help="up: nodes of a cluster (name or up/down; default "
             + ", ".join(f"{c.short}={c.nodes}" for c in _plan.CLUSTERS) + ")")
    args = parser.parse_args(argv)

    def say(msg: str) -> None:
        print(msg, flush=True)

    def note(msg: str) -> None:  # progress that must not mix into printed arguments
        print(msg, file=sys.stderr, flush=True)

    try:
        if args.command == "up":
            _lifecycle.up(say, clusters=_with_node_counts(args.nodes))
        elif args.command == "down":
            _teardown.down(say)
        elif args.command == "status":
            st = _lifecycle.status()
            print(json.dumps(st, indent=2))
            return 0 if st["up"] else 3
        elif args.command == "build":
            return _build.main(args.names)
        elif args.command == "images":
            return _images.main(args.names)
        elif args.command == "leftovers":
            found = _teardown.leftovers()
            print("\n".join(found) if found else "kube-clusters: nothing of ours is left")
            return 1 if found else 0
        elif args.command == "deploy-args":
            if not _lifecycle.status()["up"]:
                raise _plan.KubeClusterError("the test clusters are not up "
                                             "(scripts/kube-clusters up)")
            print(_installer.deploy_args(note))
        elif args.command == "kubectl":
            print(_build.kubectl_path(note))
    except (_plan.KubeClusterError, _build.KubeBuildError, CommandError) as exc:
        print(f"kube-clusters: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
