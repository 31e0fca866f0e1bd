"""Wall time of `deploy up` to a green `verify`, and of `down` to nothing running.

Target (deployment-interface issue): up-to-verified <= 6 s, median of 3 runs, on a 2-core
machine with SPIRE already built, enterprise with its three workloads. Prints the time of
every step so the slow ones are visible, and the ratio of the median to the target.

    python benchmarks/bench_up.py [--topology enterprise] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", default="enterprise")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
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
