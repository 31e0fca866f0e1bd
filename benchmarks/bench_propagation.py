"""How long a new registration takes to reach its workload, with N entries on the server:
SPIRE's default intervals against the local target's.

SPIRE propagates an entry in two steps: the server rebuilds its entry cache every
`cache_reload_interval` (5 s by default) and each agent syncs every `sync_interval` (5 s).
The local target renders both as 1 s (docs/local-target.md). For each setting, one fresh
real server (SQLite) and agent; N background entries parented to another agent (so the
server's cache holds them, as at scale, but this agent does not sync them); then, --runs
times, a new entry for this process (unix:uid) is created and the Workload API polled
every 50 ms until it issues the SVID. Prints the median, max and the ratio; writes
benchmarks/results/propagation.csv. 50k background entries take SPIRE many minutes to
create on 2 cores, so they are created once, on a seeding server, and each setting's
server starts on its own copy of that SQLite datastore (the same rows, created the same
way; only the creating is shared).

    python benchmarks/bench_propagation.py [--entries 1000] [--runs 3]
    python benchmarks/bench_propagation.py --entries 0,10000,50000
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

from _results import load, write_rows

from spire_fabric.render._agent import LOCAL_SYNC_INTERVAL
from spire_fabric.render._server import LOCAL_CACHE_RELOAD_INTERVAL
from spire_fabric.runtime.binaries import ensure_spire
from spire_fabric.server import Entry, SpireServerClient
from spire_fabric.testing import (
    SpireAgentProcess,
    SpireServerProcess,
    current_uid_selector,
    short_tempdir,
)
from spire_fabric.workload import WorkloadApiClient

TD = "propagation.example.org"
SETTINGS = {
    "spire-default": ("", ""),
    "spire-fabric-local": (
        f'  experimental {{\n    cache_reload_interval = "{LOCAL_CACHE_RELOAD_INTERVAL}"\n  }}',
        f'  experimental {{\n    sync_interval = "{LOCAL_SYNC_INTERVAL}"\n  }}',
    ),
}


def seed(entries: int, root: Path) -> tuple[Path, float]:
    """A SQLite datastore holding ``entries`` background entries, parented to another agent
    (so the server's cache holds them, as at scale, but the measured agent does not sync
    them), and the seconds SPIRE took to create them."""
    datastore = root / "seed.sqlite3"
    server = SpireServerProcess(
        ensure_spire(), TD, workdir=root / "seed", log_level="WARN",
        datastore=("sqlite3", str(datastore)),
    )  # fmt: skip
    with server, SpireServerClient(str(server.socket_path), timeout=3600) as api:
        other = f"spiffe://{TD}/spire/agent/other"
        background = [
            Entry(f"spiffe://{TD}/bg/{i}", other, [f"unix:uid:{100000 + i}"])
            for i in range(entries)
        ]
        start = time.perf_counter()
        if background:
            api.create_entries(background).raise_for_errors()
        took = time.perf_counter() - start
    return datastore, took


def measure(setting: str, datastore: Path, runs: int, td: str = TD) -> list[float]:
    server_conf, agent_conf = SETTINGS[setting]
    binaries = ensure_spire()
    root = short_tempdir("sf-bench-prop-")
    copy = root / "datastore.sqlite3"
    for suffix in ("", "-wal"):  # SQLite's write-ahead log, in case it was not checkpointed
        if Path(f"{datastore}{suffix}").exists():
            shutil.copyfile(f"{datastore}{suffix}", f"{copy}{suffix}")
    server = SpireServerProcess(
        binaries, td, workdir=root / "s", log_level="WARN", extra_server_config=server_conf,
        datastore=("sqlite3", str(copy)),
    )  # fmt: skip
    with server:
        agent = SpireAgentProcess(
            binaries, server, workdir=root / "a", log_level="WARN", extra_agent_config=agent_conf
        )
        with agent, SpireServerClient(str(server.socket_path), timeout=900) as api:
            times = []
            with WorkloadApiClient(agent.endpoint, wait_for_socket=5) as workload:
                for run in range(runs):
                    spiffe_id = f"spiffe://{td}/new/{run}"
                    start = time.perf_counter()
                    api.create_entry(Entry(spiffe_id, agent.spiffe_id, [current_uid_selector()]))
                    while True:
                        try:
                            ids = {str(s.spiffe_id) for s in workload.fetch_x509_svids(timeout=5)}
                        except Exception:  # no identity yet: the first entry is on its way
                            ids = set()
                        if spiffe_id in ids:
                            break
                        if time.perf_counter() - start > 120:
                            raise SystemExit(f"{setting}: {spiffe_id} not issued in 120 s")
                        time.sleep(0.05)
                    times.append(time.perf_counter() - start)
    shutil.rmtree(root, ignore_errors=True)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default="1000", help="background entries, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--datastore",
        type=Path,
        help="instead of --entries: a copy of the SQLite datastore of a stopped SPIRE "
        "server of --trust-domain whose entries are the background (none parented to the "
        "measured agent), e.g. the 50k that bench_entries_scale.py created",
    )
    parser.add_argument("--trust-domain", default=TD)
    parser.add_argument("--csv", default="propagation", help="results/<name>.csv")
    args = parser.parse_args()
    rows = []
    sizes = [-1] if args.datastore else [int(n) for n in args.entries.split(",")]
    for entries in sizes:
        medians = {}
        root = short_tempdir("sf-bench-seed-")
        if args.datastore:
            with sqlite3.connect(args.datastore) as db:
                entries = db.execute("SELECT COUNT(*) FROM registered_entries").fetchone()[0]
            datastore, seeded = args.datastore, float("nan")
            print(f"{entries:>6} entries from {args.datastore}")
        else:
            datastore, seeded = seed(entries, root)
            print(f"{entries:>6} entries: SPIRE created them in {seeded:.1f} s (load {load():.2f})")
        for setting in SETTINGS:
            before = load()
            times = measure(setting, datastore, args.runs, args.trust_domain)
            medians[setting] = statistics.median(times)
            print(f"{entries:>6} entries, {setting:>18}: median {medians[setting]:.2f} s, "
                  f"max {max(times):.2f} s over {len(times)} runs; load {before:.2f}")  # fmt: skip
            rows.append({"entries": entries, "setting": setting,
                         "median_s": round(medians[setting], 3), "max_s": round(max(times), 3),
                         "runs": len(times), "seed_s": round(seeded, 1),
                         "load_1m": round(before, 2)})  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
        ratio = medians["spire-fabric-local"] / medians["spire-default"]
        print(f"{entries:>6} entries: ours / SPIRE's default = {ratio:.2f}")
    write_rows(args.csv, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
