"""Create N entries and list them back: spire_fabric.server vs SPIRE's own CLI.

    python benchmarks/bench_entries.py [--count 10000]

One fresh real spire-server (SQLite) serves both sides, so both pay the same datastore.
The two sides use distinct SPIFFE IDs (`/bench/cli/<i>` vs `/bench/py/<i>`) so neither
collides with the other's entries. The CLI side runs FIRST and its entries stay, so our
list runs against a table twice as large as the CLI's list did: any bias is against us.
Listing is filtered by parent ID on both sides (each side has its own parent), so each
lists exactly its own N entries.

Baselines: `spire-server entry create -data <file.json>` (one BatchCreateEntry of all
entries) and `spire-server entry show -parentID <p> -output json` (pages of 500).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from spire_fabric.runtime.binaries import ensure_spire
from spire_fabric.server import Entry, SpireServerClient
from spire_fabric.testing import SpireServerProcess

TD = "bench.example.org"


def cli_side(server: SpireServerProcess, count: int, workdir: Path) -> tuple[float, float]:
    # `-data` takes SPIRE's legacy RegistrationEntries JSON: IDs as strings.
    data = {
        "entries": [
            {
                "spiffe_id": f"spiffe://{TD}/bench/cli/{i}",
                "parent_id": f"spiffe://{TD}/bench/cli-parent",
                "selectors": [{"type": "unix", "value": f"uid:{i}"}],
                "x509_svid_ttl": 3600,
            }
            for i in range(count)
        ]
    }
    path = workdir / "entries.json"
    path.write_text(json.dumps(data))
    t0 = time.perf_counter()
    server.cli("entry", "create", "-data", str(path), "-output", "json")
    create = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = server.cli("entry", "show", "-parentID", f"spiffe://{TD}/bench/cli-parent",
                     "-output", "json").stdout  # fmt: skip
    listed = len(json.loads(out)["entries"])
    list_time = time.perf_counter() - t0
    if listed != count:
        raise SystemExit(f"CLI listed {listed} entries, expected {count}")
    return create, list_time


def client_side(server: SpireServerProcess, count: int) -> tuple[float, float]:
    parent = f"spiffe://{TD}/bench/py-parent"
    with SpireServerClient(str(server.socket_path), timeout=300) as client:
        t0 = time.perf_counter()
        entries = [
            Entry(f"spiffe://{TD}/bench/py/{i}", parent, [f"unix:uid:{i}"], x509_svid_ttl=3600)
            for i in range(count)
        ]
        result = client.create_entries(entries)
        create = time.perf_counter() - t0
        result.raise_for_errors()
        t0 = time.perf_counter()
        listed = list(client.list_entries(parent_id=parent))
        list_time = time.perf_counter() - t0
    if len(listed) != count:
        raise SystemExit(f"client listed {len(listed)} entries, expected {count}")
    return create, list_time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args(argv)
    binaries = ensure_spire()
    with tempfile.TemporaryDirectory(prefix="sf-bench-", dir="/tmp") as tmp:
        server = SpireServerProcess(binaries, TD, workdir=Path(tmp) / "server", log_level="WARN")
        with server:
            cli_create, cli_list = cli_side(server, args.count, Path(tmp))
            py_create, py_list = client_side(server, args.count)
    print(f"SPIRE {binaries.version}, {args.count} entries, one fresh server (SQLite)")
    print(f"{'':8}{'CLI (s)':>10}{'client (s)':>12}{'ratio':>8}{'target':>9}")
    rows = (("create", cli_create, py_create, 1.1), ("list", cli_list, py_list, 1.0))
    ok = True
    for name, cli_t, py_t, target in rows:
        ratio = py_t / cli_t
        ok &= ratio <= target
        print(f"{name:8}{cli_t:10.2f}{py_t:12.2f}{ratio:8.2f}{'<= ' + str(target):>9}")
    print("targets met" if ok else "targets MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
