"""The floor under `entries list` and `entries apply` at small sizes: what starting a
Python process that speaks gRPC costs, next to SPIRE's Go CLI doing its whole job.

Why: at 1k entries `spire-server entry show` takes a few hundredths of a second of CPU for
its whole round trip, and the 0.6x target of `entries list` (1.0x of `entry create` for
`apply`) is then a budget smaller than what any Python process pays to import gRPC. This
measures each step of that floor as its own process, the same way (CPU seconds of the
process, user + system, from wait4; wall seconds), ``--runs`` times each, interleaved so
the load of a shared machine weighs on all alike, and reports the minimum (the cost
without waiting) and the median:

- ``python -c pass``: the interpreter alone;
- ``import grpc``; ``import grpc`` and the protobuf stubs of SPIRE's entry API;
- ``import spire_fabric.entries._cli``: our entries program, before it does anything;
- ``entries list --output json`` and ``spire-server entry show -output json`` of the same
  ``--entries`` entries on one server (ours by owner, the CLI by parent, as in
  bench_entries_scale.py).

CSV: benchmarks/results/start-floor.csv.

    python benchmarks/bench_start_floor.py [--entries 1000] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _python import compile_package, python_env
from _results import load, write_rows
from bench_entries_scale import entries_file

from spire_fabric.runtime.binaries import ensure_spire
from spire_fabric.testing import SpireServerProcess

TD = "bench.example.org"
STUBS = "spire_fabric.proto.spire.api.server.entry.v1.entry_pb2_grpc"


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one process; it must succeed."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=python_env())
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[:4]} exited {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    compile_package()
    binaries = ensure_spire()
    py = sys.executable
    parent = f"spiffe://{TD}/bench/py-parent"
    spec = entries_file(args.entries, parent)
    with tempfile.TemporaryDirectory(prefix="sf-bench-floor-", dir="/tmp") as tmp:
        work = Path(tmp)
        (work / "entries.yaml").write_text(yaml.safe_dump(spec))
        with SpireServerProcess(binaries, TD, workdir=work / "srv", log_level="WARN") as srv:
            sock = str(srv.socket_path)
            entries = [py, "-m", "spire_fabric.entries"]
            run([*entries, "apply", "--socket", sock, "--timeout", "3600",
                 "-f", str(work / "entries.yaml"), "--output", "json"])  # fmt: skip
            steps = {
                "python -c pass": [py, "-c", "pass"],
                "import grpc": [py, "-c", "import grpc"],
                "import grpc + entry API stubs": [py, "-c", f"import grpc, {STUBS}"],
                "import spire_fabric.entries._cli": [py, "-c", "import spire_fabric.entries._cli"],
                f"entries list ({args.entries})": [*entries, "list", "--socket", sock,
                                                    "--owner", "bench", "--output", "json"],
                f"spire-server entry show ({args.entries})": [
                    str(binaries.server), "entry", "show", "-socketPath", sock,
                    "-parentID", parent, "-output", "json"],
            }  # fmt: skip
            before = load()
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
            for _ in range(args.runs):
                for name, cmd in steps.items():
                    times[name].append(run(cmd))
            after = load()
    rows = []
    print(f"{'step':<44}{'CPU min':>9}{'CPU med':>9}{'wall min':>10}{'wall med':>10}")
    for name, got in times.items():
        walls, cpus = [w for w, _ in got], [c for _, c in got]
        row = {"step": name, "runs": args.runs,
               "cpu_min_s": round(min(cpus), 4), "cpu_median_s": round(statistics.median(cpus), 4),
               "wall_min_s": round(min(walls), 4),
               "wall_median_s": round(statistics.median(walls), 4),
               "load_1m": round(before, 2), "load_1m_after": round(after, 2)}  # fmt: skip
        rows.append(row)
        print(f"{name:<44}{row['cpu_min_s']:>9}{row['cpu_median_s']:>9}"
              f"{row['wall_min_s']:>10}{row['wall_median_s']:>10}")  # fmt: skip
    write_rows("start-floor", rows)
    print(f"load {before:.2f} -> {after:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
