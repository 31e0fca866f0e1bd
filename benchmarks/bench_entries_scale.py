"""`entries apply` and `entries list` against SPIRE's own CLI, at 1k / 10k / 50k entries.

Targets (issue 25): apply <= 1.0x of `spire-server entry create -data` at every size,
list <= 0.6x of `spire-server entry show`. Both sides are what a user runs: one process
each (`python -m spire_fabric.entries apply -f entries.yaml --output json` against
`spire-server entry create -data entries.json -output json`).

Each side creates into its own fresh spire-server of the same binary and configuration
(SQLite), one after the other, with the other side's server stopped. Why not one server
for both: SPIRE's cost per created entry grows with the rows already in its table (each
create first looks up a similar entry in the same transaction), so whichever side
created second paid for the first side's rows, and the ratio swung with the order. Then
both servers run
again from their data directories and each side lists its own server 5 times,
alternating with the other, and the medians count; our list still filters by the owner's
entry-ID prefix as it arrives (SPIRE cannot filter on it) where the CLI filters by parent.
At sizes given to `--together` (50k: SPIRE needs tens of minutes per side on this
machine) both creates run at the same time instead, each on its own server, so a changing
load on a shared machine weighs on both alike; the CSV's `created` column says which.
A second `apply` of the same file measures the no-change diff. Our processes run with
their bytecode cached, as an installed package has it (_python.py); each `list` also
records the client process's own CPU seconds (the server's are in neither). CSV:
benchmarks/results/entries.csv.

With --list-only SIZES, one server filled by our apply (SPIRE's CLI needs well over
30 min to create 50k) is listed by both sides, alternating: benchmarks/results/
entries-list.csv. With --csv NAME the rows go to another file (repeated runs of one size).

    python benchmarks/bench_entries_scale.py [--sizes 1000,10000] [--together 1000,10000]
    python benchmarks/bench_entries_scale.py --sizes 1000,1000,1000 --together 1000 \
        --csv entries-apply-1k
    python benchmarks/bench_entries_scale.py --list-only 50000
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from _python import compile_package, python_env
from _results import load, write_rows

from spire_fabric.runtime.binaries import ensure_spire
from spire_fabric.server import SpireServerClient
from spire_fabric.testing import SpireServerProcess

TD = "bench.example.org"
APPLY_TARGET, LIST_TARGET = 1.0, 0.6
LIST_RUNS = 5


# `entry create -data` sends one BatchCreateEntry of the whole file, and gRPC refuses a
# message over 4 MB: about 40k entries of this shape. Past that a CLI user must split the
# file; the benchmark does the same, in files of this many entries, and says so.
CLI_CHUNK = 10_000


def timed(cmd: list[str], *, check: bool = True) -> tuple[float, str, str]:
    took, _, out, error = timed_cpu(cmd, check=check)
    return took, out, error


def timed_cpu(cmd: list[str], *, check: bool = True) -> tuple[float, float, str, str]:
    """Wall seconds, the process's own CPU seconds (user + system), stdout, and the error
    output when it failed. The CPU is the client's alone: the server's is not in it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=python_env())
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0 and check:
        raise SystemExit(f"{cmd[:4]} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return took, cpu, proc.stdout, "" if proc.returncode == 0 else proc.stderr + proc.stdout


def cli_create(
    cli: list[str], sock: str, data: dict[str, list[object]], workdir: Path
) -> tuple[float, str]:
    """Seconds for the CLI to create ``data``, and a note when it had to be split."""
    path = workdir / "entries.json"
    path.write_text(json.dumps(data))
    took, _, error = timed(
        [*cli, "create", "-socketPath", sock, "-data", str(path), "-output", "json"], check=False
    )
    if not error:
        return took, ""
    if "larger than max" not in error:
        raise SystemExit(f"spire-server entry create failed: {error[-2000:]}")
    total = 0.0
    entries = data["entries"]
    for i in range(0, len(entries), CLI_CHUNK):
        part = workdir / f"entries-{i}.json"
        part.write_text(json.dumps({"entries": entries[i : i + CLI_CHUNK]}))
        took, _, _ = timed(
            [*cli, "create", "-socketPath", sock, "-data", str(part), "-output", "json"]
        )
        total += took
    note = f"one file refused ({error.strip().splitlines()[-1][:120]}); split in {CLI_CHUNK}s"
    return total, note


def list_both(count: int, cli_sock: str, cli_parent: str, our_sock: str) -> dict[str, float]:
    """`spire-server entry show -parentID` against `entries list --owner bench`, alternating.

    Lists are short, and the load of a shared machine moves a short wall time a lot: each
    side lists LIST_RUNS times, alternating, and the medians count."""
    cli = [str(ensure_spire().server), "entry"]
    ours = [sys.executable, "-m", "spire_fabric.entries"]
    cli_runs, py_runs = [], []
    for _ in range(LIST_RUNS):
        took, cpu, out, _ = timed_cpu(
            [*cli, "show", "-socketPath", cli_sock, "-parentID", cli_parent, "-output", "json"]
        )
        assert len(json.loads(out)["entries"]) == count, "CLI listed a different count"
        cli_runs.append((took, cpu))
        listing = [*ours, "list", "--socket", our_sock, "--owner", "bench", "--output", "json"]
        took, cpu, out, _ = timed_cpu(listing)
        assert len(json.loads(out)["entries"]) == count, "list returned a different count"
        py_runs.append((took, cpu))
    cli_list, cli_list_cpu = (statistics.median(x) for x in zip(*cli_runs, strict=True))
    py_list, py_list_cpu = (statistics.median(x) for x in zip(*py_runs, strict=True))
    # the library call without the process: what a script or notebook pays
    with SpireServerClient(our_sock, timeout=600) as client:
        start = time.perf_counter()
        owned = list(client.list_entries(id_prefix="bench."))
        lib_list = time.perf_counter() - start
    assert len(owned) == count, "the client listed a different count"
    return {
        "cli_list_s": round(cli_list, 3),
        "list_s": round(py_list, 3),
        "list_ratio": round(py_list / cli_list, 3),
        "cli_list_cpu_s": round(cli_list_cpu, 3),
        "list_cpu_s": round(py_list_cpu, 3),
        "client_list_s": round(lib_list, 3),
        "client_list_ratio": round(lib_list / cli_list, 3),
    }


def entries_file(count: int, parent: str) -> dict[str, object]:
    """What our `entries apply` reads: ``count`` entries under ``parent``, owned by "bench"
    (the same registrations the CLI's JSON creates)."""
    return {
        "owner": "bench",
        "defaults": {"parent_id": parent},
        "entries": [
            {"spiffe_id": f"spiffe://{TD}/bench/py/{i}", "selectors": [f"unix:uid:{i}"],
             "x509_svid_ttl": 3600}
            for i in range(count)
        ],
    }  # fmt: skip


def list_only(count: int, workdir: Path) -> dict[str, object]:
    """Both lists against ONE server that our apply filled (SPIRE's CLI needs well over
    30 min to create 50k): the same entries, listed by the CLI by parent and by us by owner.
    The apply's time is recorded too, with no CLI create to compare it with."""
    parent = f"spiffe://{TD}/bench/py-parent"
    spec = entries_file(count, parent)
    (workdir / "entries.yaml").write_text(yaml.safe_dump(spec))
    before = load()
    with SpireServerProcess(ensure_spire(), TD, workdir=workdir / "one", log_level="WARN") as srv:
        sock = str(srv.socket_path)
        apply_s, out, _ = timed(
            [sys.executable, "-m", "spire_fabric.entries", "apply", "--socket", sock,
             "--timeout", "3600", "-f", str(workdir / "entries.yaml"), "--output", "json"]
        )  # fmt: skip
        assert json.loads(out)["failed"] == 0, "apply did not create all"
        at_list = load()
        listed = list_both(count, sock, parent, sock)
    return {"entries": count, "apply_s": round(apply_s, 3), **listed,
            "load_1m": round(before, 2), "load_1m_at_list": round(at_list, 2)}  # fmt: skip


def one_size(count: int, workdir: Path, *, together: bool = False) -> dict[str, object]:
    binaries = ensure_spire()
    cli_parent, py_parent = f"spiffe://{TD}/bench/cli-parent", f"spiffe://{TD}/bench/py-parent"
    data = {
        "entries": [
            {
                "spiffe_id": f"spiffe://{TD}/bench/cli/{i}",
                "parent_id": cli_parent,
                "selectors": [{"type": "unix", "value": f"uid:{i}"}],
                "x509_svid_ttl": 3600,
            }
            for i in range(count)
        ]
    }
    spec = entries_file(count, py_parent)
    (workdir / "entries.yaml").write_text(yaml.safe_dump(spec))
    before = load()

    def server(side: str) -> SpireServerProcess:
        # the same workdir again starts the server on the rows it already holds
        return SpireServerProcess(binaries, TD, workdir=workdir / side, log_level="WARN")

    cli = [str(binaries.server), "entry"]
    ours = [sys.executable, "-m", "spire_fabric.entries"]

    def apply_cmd(sock: str) -> list[str]:
        return [*ours, "apply", "--socket", sock, "--timeout", "3600",
                "-f", str(workdir / "entries.yaml"), "--output", "json"]  # fmt: skip

    if together:  # both creates at once, each on its own server: the same load for both
        with (
            server("cli") as cli_server,
            server("ours") as our_server,
            ThreadPoolExecutor(1) as pool,
        ):
            cli_job = pool.submit(cli_create, cli, str(cli_server.socket_path), data, workdir)
            py_apply, out, _ = timed(apply_cmd(str(our_server.socket_path)))
            cli_create_s, cli_note = cli_job.result()
    else:
        with server("cli") as cli_server:
            cli_create_s, cli_note = cli_create(cli, str(cli_server.socket_path), data, workdir)
        with server("ours") as our_server:
            py_apply, out, _ = timed(apply_cmd(str(our_server.socket_path)))
    doc = json.loads(out)
    assert doc["failed"] == 0 and len(doc["changes"]) == count, "apply did not create all"
    with server("ours") as our_server:
        py_noop, out, _ = timed(apply_cmd(str(our_server.socket_path)))
        assert json.loads(out)["unchanged"] == count, "second apply was not a no-op"
    with server("cli") as cli_server, server("ours") as our_server:
        listed = list_both(
            count, str(cli_server.socket_path), cli_parent, str(our_server.socket_path)
        )
    return {
        "entries": count,
        "cli_create_s": round(cli_create_s, 3),
        "apply_s": round(py_apply, 3),
        "apply_ratio": round(py_apply / cli_create_s, 3),
        "apply_noop_s": round(py_noop, 3),
        **listed,
        "load_1m": round(before, 2),
        "created": "together" if together else "one after the other",
        "cli_note": cli_note,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument(
        "--list-only",
        default="",
        help="sizes (comma-separated) whose lists run against one server that our apply "
        "filled, with no CLI create (it takes over 30 min at 50k): benchmarks/results/"
        "entries-list.csv",
    )
    parser.add_argument(
        "--together",
        default="",
        help="sizes (comma-separated) whose two creates run at the same time, each on its "
        "own server: for sizes where SPIRE takes many minutes, so both sides see the same load",
    )
    parser.add_argument(
        "--csv",
        default="entries",
        help="the results file, benchmarks/results/<CSV>.csv (entries: the plotted one; "
        "another name for repeated runs of one size, such as entries-apply-1k)",
    )
    args = parser.parse_args()
    binaries = ensure_spire()
    compile_package()
    print(f"SPIRE {binaries.version}; one fresh server (SQLite) per side and size")
    if args.list_only:
        return list_only_sizes([int(s) for s in args.list_only.split(",")])
    rows = []
    for count in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="sf-bench-entries-", dir="/tmp") as tmp:
            together = str(count) in args.together.split(",")
            rows.append(one_size(count, Path(tmp), together=together))
        write_rows(args.csv, rows)
        r = rows[-1]
        print(
            f"{count:>6} entries: create CLI {r['cli_create_s']} s, apply {r['apply_s']} s "
            f"({r['apply_ratio']}x, target <= {APPLY_TARGET}); "
            f"no-op apply {r['apply_noop_s']} s; "
            f"list CLI {r['cli_list_s']} s, ours {r['list_s']} s ({r['list_ratio']}x, "
            f"target <= {LIST_TARGET}; client CPU {r['cli_list_cpu_s']} s and "
            f"{r['list_cpu_s']} s); client list in-process {r['client_list_s']} s "
            f"({r['client_list_ratio']}x); load {r['load_1m']} {r['cli_note']}"
        )
    ok = all(float(str(r["apply_ratio"])) <= APPLY_TARGET for r in rows) and all(
        float(str(r["list_ratio"])) <= LIST_TARGET for r in rows
    )
    print("targets met" if ok else "targets MISSED")
    return 0 if ok else 1


def list_only_sizes(sizes: list[int]) -> int:
    rows = []
    for count in sizes:
        with tempfile.TemporaryDirectory(prefix="sf-bench-list-", dir="/tmp") as tmp:
            rows.append(list_only(count, Path(tmp)))
        write_rows("entries-list", rows)
        r = rows[-1]
        print(
            f"{count:>6} entries (one server, filled by apply in {r['apply_s']} s): list CLI "
            f"{r['cli_list_s']} s, ours {r['list_s']} s ({r['list_ratio']}x, target <= "
            f"{LIST_TARGET}; client CPU {r['cli_list_cpu_s']} s and {r['list_cpu_s']} s); "
            f"in-process {r['client_list_s']} s; load {r['load_1m_at_list']}"
        )
    ok = all(float(str(r["list_ratio"])) <= LIST_TARGET for r in rows)
    print("list target met" if ok else "list target MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
