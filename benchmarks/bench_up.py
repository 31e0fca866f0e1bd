"""Wall time of `deploy up` to a green `verify`, and of `down` to nothing running.

Local target (deployment-interface issue): up-to-verified <= 6 s, median of 3 runs, on a
2-core machine with SPIRE already built, enterprise with its three workloads.

Kubernetes target (issue 25, item 6): `deploy up --target kubernetes` from nothing to a
green verify <= 45 s on the two test clusters, run as a user runs it (a subprocess). The
clusters are brought up through the harness under their shared lock (not timed, and the
installer images loaded first, as the tests do); each run ends with `down --purge`. Writes
benchmarks/results/up_kubernetes.csv, one row per run with its phases.

Both print the time of every step so the slow ones are visible, and the ratio of the
median to the target.

    python benchmarks/bench_up.py [--topology enterprise] [--runs 3]
    python benchmarks/bench_up.py --target kubernetes [--runs 1] [--server-replicas N]

`--server-replicas N` runs the topology with every server at N replicas on Kubernetes (a
YAML copy of it), to show what the enterprise preset's highly available downstream server
costs a fresh `up` (its replicas' readiness delay, docs/high-availability.md); it writes
up_kubernetes_replicas<N>.csv.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import statistics
import sys
import time
from collections.abc import Iterator

from spire_fabric.runtime.binaries import ensure_spire
from spire_fabric.runtime.local import LocalDeployment
from spire_fabric.runtime.local.localize import LocalSettings
from spire_fabric.runtime.local.supervisor import pid_alive
from spire_fabric.testing import short_tempdir
from spire_fabric.topology import preset
from spire_fabric.verify import verify_deployment

TARGET_S = 6.0
KUBERNETES_TARGET_S = 45.0
# `up`'s step lines (deploy/_output.py StepPrinter) and its last line
_STEP = re.compile(r"^[✓✗] (?P<name>.+) \((?P<s>[0-9.]+)s\)$")
_TOTAL = re.compile(r"^up to verified in (?P<s>[0-9.]+)s$")


class Timer:
    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.steps.append((name, time.perf_counter() - start))


def free_base() -> int:
    for base in range(46000, 60000, 1000):
        offsets = (-920, -557, 80, 81, 443, 1080, 1081, 1443, *range(8180 - 31000, 8184 - 31000))
        ok = True
        for off in offsets:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + off))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise SystemExit("no free port base")


def one_run(topology_name: str) -> tuple[float, float, list[tuple[str, float]]]:
    state = short_tempdir("sf-bench-up-") / "state"
    timer = Timer()
    start = time.perf_counter()
    deployment = LocalDeployment.create(
        preset(topology_name), state, LocalSettings(port_base=free_base(), uid=os.getuid())
    )
    deployment.up(timer)
    with timer("verify"):
        report = verify_deployment(deployment)
    up_to_verified = time.perf_counter() - start
    if not report.ok:
        deployment.down(purge=True)
        raise SystemExit(f"verify failed: {[c.id for c in report.failed]}")
    pids = [s.pid for s in deployment.supervisor.states().values() if s.pid]
    pids.append(deployment.supervisor.pid)
    down_start = time.perf_counter()
    deployment.down(purge=True)
    while any(p and pid_alive(p) for p in pids):
        time.sleep(0.01)
    down_s = time.perf_counter() - down_start
    return up_to_verified, down_s, timer.steps


def kubernetes_run(topology: str, extra: list[str]) -> tuple[float, list[tuple[str, float]]]:
    """One `deploy up --target kubernetes` from nothing to green, then `down --purge`:
    (up to verified as `up` reports it, its steps)."""
    from _clusters import deploy

    state = short_tempdir("sf-bench-kup-") / "state"
    where = ["--target", "kubernetes", "--state-dir", str(state)]
    try:
        up = deploy("up", "--topology", topology, *where, extra=extra)
        lines = [line.strip() for line in up.stdout.splitlines()]
        if up.returncode != 0:
            raise SystemExit(
                f"up exited {up.returncode}:\n{up.stdout[-4000:]}\n{up.stderr[-2000:]}"
            )
    finally:
        if state.exists():
            down = deploy("down", "--purge", *where, extra=[], timeout=600)
            if down.returncode != 0:
                raise SystemExit(f"down exited {down.returncode}:\n{down.stdout}\n{down.stderr}")
    for line in lines:  # verify went round again: what it waited for
        if line.startswith("not green yet"):
            print(f"  up: {line}", flush=True)
    steps = [(m["name"], float(m["s"])) for m in map(_STEP.match, lines) if m]
    totals = [float(m["s"]) for m in map(_TOTAL.match, lines) if m]
    if not totals:
        raise SystemExit(f"no 'up to verified in' line in:\n{up.stdout[-3000:]}")
    return totals[-1], steps


def with_server_replicas(topology: str, replicas: int) -> str:
    """A YAML copy of ``topology`` whose servers run ``replicas`` replicas on Kubernetes."""
    import dataclasses

    from spire_fabric.topology import dump_topology

    t = preset(topology)
    servers = tuple(
        s if s.kubernetes is None
        else dataclasses.replace(s, kubernetes=dataclasses.replace(s.kubernetes, replicas=replicas))
        for s in t.servers
    )  # fmt: skip
    path = short_tempdir("sf-bench-topology-") / f"{topology}-replicas{replicas}.yaml"
    path.write_text(dump_topology(dataclasses.replace(t, servers=servers)))
    return str(path)


def kubernetes_main(topology: str, runs: int, server_replicas: int | None = None) -> int:
    from _clusters import test_clusters
    from _results import load, write_rows

    rows: list[dict[str, object]] = []
    ups: list[float] = []
    source, label, csv_name = topology, topology, "up_kubernetes"
    if server_replicas is not None:
        source = with_server_replicas(topology, server_replicas)
        label = f"{topology}, servers at {server_replicas} replicas"
        csv_name = f"up_kubernetes_replicas{server_replicas}"
    with test_clusters() as extra:
        for i in range(runs):
            load_before = load()
            up_s, steps = kubernetes_run(source, extra)
            ups.append(up_s)
            print(f"\nrun {i + 1}: up --target kubernetes to verified {up_s:.1f} s "
                  f"(load {load_before:.2f})")  # fmt: skip
            for name, seconds in steps:
                print(f"  {seconds:6.1f} s  {name}")
            other = up_s - sum(s for _, s in steps)
            print(f"  {other:6.1f} s  (outside the steps: start, plan, report)")
            rows.append({"run": i + 1, "topology": label, "up_to_verified_s": up_s,
                         "load_1m": round(load_before, 2),
                         **{f"phase:{name}": s for name, s in steps}})  # fmt: skip
    med = statistics.median(ups)
    print(
        f"\nup --target kubernetes to verified: runs {', '.join(f'{u:.1f}' for u in ups)} s; "
        f"median {med:.1f} s vs target {KUBERNETES_TARGET_S:.0f} s: "
        f"ratio {med / KUBERNETES_TARGET_S:.2f} (<= 1.0 meets it); load {load():.2f}"
    )
    keys = list(dict.fromkeys(k for r in rows for k in r))
    write_rows(csv_name, [{k: r.get(k, "") for k in keys} for r in rows])
    return 0 if med <= KUBERNETES_TARGET_S else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", default="enterprise")
    parser.add_argument("--target", choices=("local", "kubernetes"), default="local")
    parser.add_argument(
        "--runs", type=int, default=None, help="runs (default: 3 local, 1 on Kubernetes)"
    )
    parser.add_argument(
        "--server-replicas", type=int, default=None, metavar="N",
        help="Kubernetes: every server at N replicas (a YAML copy of the preset)",
    )
    args = parser.parse_args()
    if args.target == "kubernetes":
        return kubernetes_main(args.topology, args.runs or 1, args.server_replicas)
    if args.server_replicas is not None:
        parser.error("--server-replicas is for --target kubernetes (the local target runs 1)")
    args.runs = args.runs or 3
    binaries = ensure_spire()
    print(f"SPIRE {binaries.version} ({binaries.source}); {os.cpu_count()} CPUs")
    ups, downs = [], []
    for i in range(args.runs):
        up_s, down_s, steps = one_run(args.topology)
        ups.append(up_s)
        downs.append(down_s)
        print(f"\nrun {i + 1}: up to verified {up_s:.2f} s, down to nothing running {down_s:.2f} s")
        for name, seconds in steps:
            print(f"  {seconds:6.2f} s  {name}")
    up_med = statistics.median(ups)
    down_med = statistics.median(downs)
    print(
        f"\nup-to-verified runs {', '.join(f'{u:.2f}' for u in ups)} s; "
        f"median {up_med:.2f} s vs target {TARGET_S:.0f} s: "
        f"ratio {up_med / TARGET_S:.2f} (<= 1.0 meets it); down median {down_med:.2f} s"
    )
    return 0 if up_med <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
