"""X.509-SVID fetch latency: spire_fabric's WorkloadApiClient vs py-spiffe's, same real agent.

Baseline: ``spiffe.WorkloadApiClient(socket).fetch_x509_svid()`` (py-spiffe 0.3.x). Both
clients keep one channel open; calls alternate ours/theirs so drift on the machine hits
both equally. Prints both medians (and p90) and the ratio ours/theirs (target <= 1.0).

    .venv/bin/python benchmarks/bench_workload_fetch.py [-n 500]
"""

from __future__ import annotations

import argparse
import statistics
import time

import spiffe

from spire_fabric.runtime.binaries import ensure_spire
from spire_fabric.testing._processes import (
    SpireAgentProcess,
    SpireServerProcess,
    current_uid_selector,
    remove_workdir,
)
from spire_fabric.workload import NoIdentityIssuedError, WorkloadApiClient


def _wait_for_identity(client: WorkloadApiClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.fetch_x509_svid()
            return
        except NoIdentityIssuedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="iterations per client")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    binaries = ensure_spire()
    server = SpireServerProcess(binaries, "example.org", log_level="WARN").start()
    agent = SpireAgentProcess(binaries, server, log_level="WARN").start()
    try:
        server.create_entry("spiffe://example.org/bench", agent.spiffe_id, [current_uid_selector()])
        ours = WorkloadApiClient(agent.endpoint)
        _wait_for_identity(ours)
        theirs = spiffe.WorkloadApiClient(agent.endpoint)
        for _ in range(args.warmup):
            ours.fetch_x509_svid()
            theirs.fetch_x509_svid()

        ours_s: list[float] = []
        theirs_s: list[float] = []
        for i in range(args.n):
            # Alternate who goes first, so neither always runs right after the other.
            order = ((ours, ours_s), (theirs, theirs_s))
            for client, samples in order if i % 2 == 0 else reversed(order):
                start = time.perf_counter()
                client.fetch_x509_svid()
                samples.append(time.perf_counter() - start)
        ours.close()
        theirs.close()
    finally:
        agent.stop()
        server.stop()
        remove_workdir(agent)
        remove_workdir(server)

    def p90(values: list[float]) -> float:
        return statistics.quantiles(values, n=10)[-1] * 1e3

    ours_med = statistics.median(ours_s) * 1e3
    theirs_med = statistics.median(theirs_s) * 1e3
    print(f"X.509-SVID fetch, {args.n} iterations each, alternating, same SPIRE agent")
    for name, med, samples in (
        ("spire_fabric WorkloadApiClient", ours_med, ours_s),
        ("py-spiffe WorkloadApiClient", theirs_med, theirs_s),
    ):
        print(f"  {name:32} median {med:.3f} ms  p90 {p90(samples):.3f} ms")
    print(f"  {'ratio ours/theirs (median)':32} {ours_med / theirs_med:.2f}x  (target <= 1.0x)")


if __name__ == "__main__":
    main()
