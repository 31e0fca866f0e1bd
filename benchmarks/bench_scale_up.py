"""Local `up` of the scale topology to a green `verify`, then `verify` and `status` again.

Target (issue 25): 20 agents and 200 workloads up to green in <= 30 s on a 2-core machine,
SPIRE already built. Prints the time of every phase, the ratio to the target, and the
time of a second `verify` and of `status` on the running deployment (they must stay in
seconds). Sizes are options; each size is one run, one row of
benchmarks/results/scale_up.csv.

    python benchmarks/bench_scale_up.py [--sizes 20x200] [--running 5]
    python benchmarks/bench_scale_up.py --sizes 5x50,10x100,20x200
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

from _results import load, write_rows
from bench_up import Timer, free_base

from spire_fabric.runtime.binaries import ensure_spire
from spire_fabric.runtime.local import LocalDeployment
from spire_fabric.runtime.local.localize import LocalSettings
from spire_fabric.testing import short_tempdir
from spire_fabric.topology import preset
from spire_fabric.verify import verify_deployment

TARGET_S = 30.0


def one_size(agents: int, workloads: int, running: int) -> dict[str, object]:
    spec = f"scale:agents={agents},workloads={workloads},running={min(running, workloads)}"
    state = short_tempdir("sf-bench-scale-") / "state"
    timer = Timer()
    load_before = load()
    start = time.perf_counter()
    deployment = LocalDeployment.create(
        preset(spec), state, LocalSettings(port_base=free_base(), uid=os.getuid())
    )
    try:
        deployment.up(timer)
        with timer("verify"):
            report = verify_deployment(deployment)
        up_s = time.perf_counter() - start
        if not report.ok:
            raise SystemExit(f"verify failed: {[(c.id, c.detail) for c in report.failed][:5]}")
        t0 = time.perf_counter()
        again = verify_deployment(deployment)
        verify_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows = deployment.status()
        status_s = time.perf_counter() - t0
    finally:
        deployment.down(purge=True)
    print(f"\n{spec}: up to verified {up_s:.2f} s ({len(report.checks)} checks), "
          f"verify again {verify_s:.2f} s ({'green' if again.ok else 'RED'}), "
          f"status {status_s:.2f} s ({len(rows)} rows); load {load_before:.2f}")  # fmt: skip
    for name, seconds in timer.steps:
        print(f"  {seconds:6.2f} s  {name}")
    row: dict[str, object] = {
        "agents": agents,
        "workloads": workloads,
        "running": running,
        "up_to_verified_s": round(up_s, 3),
        "verify_s": round(verify_s, 3),
        "status_s": round(status_s, 3),
        "checks": len(report.checks),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_1m": round(load_before, 2),
    }
    for name, seconds in timer.steps:
        row[f"phase:{name}"] = round(seconds, 3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20x200", help="AGENTSxWORKLOADS, comma-separated")
    parser.add_argument("--running", type=int, default=5)
    args = parser.parse_args()
    binaries = ensure_spire()
    print(f"SPIRE {binaries.version} ({binaries.source}); {os.cpu_count()} CPUs")
    rows = []
    for size in args.sizes.split(","):
        agents, _, workloads = size.partition("x")
        rows.append(one_size(int(agents), int(workloads), args.running))
    # phases differ between sizes only if a topology has tiers; keep one header
    keys = list(dict.fromkeys(k for r in rows for k in r))
    write_rows("scale_up", [{k: r.get(k, "") for k in keys} for r in rows])
    last = rows[-1]
    up_s = float(str(last["up_to_verified_s"]))
    print(f"\nlargest size: up to verified {up_s:.2f} s vs target {TARGET_S:.0f} s: "
          f"ratio {up_s / TARGET_S:.2f} (<= 1.0 meets it)")  # fmt: skip
    return 0 if up_s <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
