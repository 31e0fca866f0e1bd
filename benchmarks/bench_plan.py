"""`deploy plan` of the scale topology with many registrations: wall time and peak RSS.

Target (issue 25): 50k registrations planned in <= 2 s with <= 500 MB RSS. Each size runs
`python -m spire_fabric.deploy plan --topology scale:entries=N` as its own process (a
user's cost: imports, building and validating the topology, localizing it, diffing the
entries, printing), for the table and for `--output json`, on a fresh state directory (no
server runs, so every entry is "to create"; the diff against live entries is measured by
bench_entries_scale.py). One row per size and output in benchmarks/results/plan.csv, with
the process's CPU seconds beside its wall time: on a shared machine the wall time grows
with the load, the CPU time much less. Each size and output runs ``--runs`` times; the
medians count, and the fastest run is kept beside them. Bytecode is compiled first, as pip
does (_python.py).

    python benchmarks/bench_plan.py [--sizes 1000,10000,50000]
    python benchmarks/bench_plan.py --compare /tmp/main-checkout/src [--runs 5]

--compare SRC runs the 50k plan from another source tree (its ``src`` directory, e.g. a
worktree of the commit before a change; compiled first like ours) and from this one,
alternating, ``--runs`` times each, both outputs, into benchmarks/results/plan-compare.csv:
a before and after measured under the same load, minutes apart at most.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _python import compile_package, python_env
from _results import load, write_rows

TARGET_S, TARGET_RSS_MB, TARGET_SIZE = 2.0, 500.0, 50_000


def one_plan(entries: int, output: str, source: str | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of one `plan` process;
    ``source`` runs the package from another tree's ``src`` directory instead of ours."""
    env = python_env()
    if source is not None:
        env["PYTHONPATH"] = source
    with tempfile.TemporaryDirectory(prefix="sf-bench-plan-") as tmp:
        cmd = [sys.executable, "-m", "spire_fabric.deploy", "plan",
               "--topology", f"scale:entries={entries}", "--state-dir", f"{tmp}/state",
               "--output", output]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 2:  # 2: changes to make, as a fresh plan must have
            assert proc.stderr is not None
            raise SystemExit(f"plan exited {proc.returncode}: {proc.stderr.read().decode()}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--compare", metavar="SRC", help="another tree's src directory")
    parser.add_argument("--runs", type=int, default=5,
                        help="runs per side with --compare; per size and output otherwise "
                        "(the median counts, the fastest is kept beside it)")  # fmt: skip
    args = parser.parse_args()
    compile_package()
    if args.compare:
        return compare(args.compare, args.runs)
    rows = []
    print(f"{'entries':>8}{'output':>8}{'wall (s)':>10}{'CPU (s)':>9}{'RSS (MB)':>10}{'load':>7}")
    for size in (int(s) for s in args.sizes.split(",")):
        for output in ("table", "json"):
            before = load()
            runs = [one_plan(size, output) for _ in range(args.runs)]
            wall, cpu, rss = (statistics.median(x) for x in zip(*runs, strict=True))
            print(f"{size:>8}{output:>8}{wall:10.2f}{cpu:9.2f}{rss:10.0f}{before:7.2f}")
            rows.append({"registrations": size + 200, "entries": size, "output": output,
                         "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                         "max_rss_mb": round(rss, 1), "load_1m": round(before, 2),
                         "runs": args.runs, "wall_min_s": round(min(r[0] for r in runs), 3),
                         "cpu_min_s": round(min(r[1] for r in runs), 3)})  # fmt: skip
    write_rows("plan", rows)
    at = [r for r in rows if r["entries"] == TARGET_SIZE]
    ok = True
    for r in at:
        wall, cpu = float(str(r["wall_s"])), float(str(r["cpu_s"]))
        rss = float(str(r["max_rss_mb"]))
        ok &= wall <= TARGET_S and rss <= TARGET_RSS_MB
        print(
            f"{TARGET_SIZE} entries, {r['output']}: {wall / TARGET_S:.2f}x of {TARGET_S} s "
            f"(CPU {cpu / TARGET_S:.2f}x), {rss / TARGET_RSS_MB:.2f}x of {TARGET_RSS_MB:.0f} MB "
            "(<= 1.0 meets it)"
        )
    return 0 if ok else 1


def compare(source: str, runs: int) -> int:
    """The 50k plan from ``source`` ("before") and from this tree ("after"), alternating."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", source], env=python_env(),
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    rows: list[dict[str, object]] = []
    print(f"{'side':>7}{'output':>8}{'wall (s)':>10}{'CPU (s)':>9}{'RSS (MB)':>10}{'load':>7}")
    for run in range(runs):
        for side, tree in (("before", source), ("after", None)):
            for output in ("table", "json"):
                before = load()
                wall, cpu, rss = one_plan(TARGET_SIZE, output, tree)
                print(f"{side:>7}{output:>8}{wall:10.2f}{cpu:9.2f}{rss:10.0f}{before:7.2f}")
                rows.append({"run": run, "side": side, "entries": TARGET_SIZE, "output": output,
                             "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                             "max_rss_mb": round(rss, 1), "load_1m": round(before, 2)})  # fmt: skip
    write_rows("plan-compare", rows)
    for side in ("before", "after"):
        for output in ("table", "json"):
            mine = [r for r in rows if r["side"] == side and r["output"] == output]
            wall = statistics.median(float(str(r["wall_s"])) for r in mine)
            cpu = statistics.median(float(str(r["cpu_s"])) for r in mine)
            rss = statistics.median(float(str(r["max_rss_mb"])) for r in mine)
            print(f"{side} {output}: median wall {wall:.2f} s ({wall / TARGET_S:.2f}x of "
                  f"{TARGET_S} s), CPU {cpu:.2f} s, RSS {rss:.0f} MB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
