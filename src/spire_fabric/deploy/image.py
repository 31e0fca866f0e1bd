"""``image build``: the project's workload image as an OCI archive, for clusters that are
not ours (kind, k3d, EKS…), whose nodes cannot run the example workloads from a plain
Python image because it has no spire_fabric.

The archive is the default `--image workload` (``spire-fabric:<version>``); loading it
into the nodes (or pushing it) is the user's one step, which the output names.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from spire_fabric.runtime.images import (
    ImageBuildError,
    build_project_image,
    default_reference,
)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("image", help="build the project's workload image")
    sub = p.add_subparsers(dest="image_command", required=True, metavar="COMMAND")
    b = sub.add_parser(
        "build",
        help="write the workload image (spire_fabric + the examples) as an OCI archive",
        description="Write the project's workload image, made from the installed "
        "spire_fabric, as an OCI archive (image-layout tarball).",
    )
    b.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("spire-fabric.tar"),
        help="the archive to write (default: spire-fabric.tar)",
    )
    b.add_argument(
        "--tag", default=None, help=f"the image reference NAME:TAG (default: {default_reference()})"
    )
    b.add_argument(
        "--base",
        type=Path,
        default=None,
        metavar="OCI-ARCHIVE",
        help="a Python 3.10+ image as an OCI archive to build on, e.g. from `skopeo copy "
        "docker://python:3.11-slim oci-archive:base.tar` (default: Debian 12 made with "
        "debootstrap, which needs root)",
    )
    b.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    try:
        built = build_project_image(
            args.output, reference=args.tag, base=args.base,
            say=lambda m: console.print(m, highlight=False),
        )  # fmt: skip
    except ImageBuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    console.print(
        f"wrote {built.archive} ({built.size / 1e6:.0f} MB): {built.reference} "
        f"(Python {built.python}, base {built.base})",
        highlight=False,
    )
    a = built.archive
    console.print(
        f"load it: kind load image-archive {a} | k3d image import {a} | "
        f"ctr -n k8s.io images import {a} | podman load -i {a} | docker load -i {a}",
        highlight=False,
    )
    if built.reference != default_reference():
        console.print(f"and pass --image workload={built.reference} to up", highlight=False)
    return 0
