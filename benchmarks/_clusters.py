"""The two test clusters for a Kubernetes benchmark, held under the clusters' shared lock.

The clusters are one resource on this machine (other sessions run their tests on them), so
a benchmark takes ``/tmp/kube-clusters.lock`` itself, for as long as it uses them, and
leaves them as it found them: clusters it brought up are brought down before the lock is
released. Do not wrap a benchmark in ``flock /tmp/kube-clusters.lock``: the lock is taken
on a file of its own, and a second holder of the same file would wait for ever.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from spire_fabric._filelock import file_lock

ROOT = Path(__file__).resolve().parent.parent
LOCK = Path("/tmp/kube-clusters.lock")
sys.path.insert(0, str(ROOT / "tests"))  # the harness is development tooling, not shipped

import kube_harness as harness  # noqa: E402


@contextlib.contextmanager
def test_clusters() -> Iterator[list[str]]:
    """Lock, clusters up (reused if up), installer images loaded; yields the `deploy`
    arguments that point at them. Clusters brought up here go down again, and what they
    leave behind is an error."""
    with file_lock(LOCK, on_wait=lambda m: print(m, flush=True)):
        started = not harness.status()["up"]
        if started:
            t0 = time.monotonic()
            harness.up(say=lambda _: None)
            print(f"test clusters up in {time.monotonic() - t0:.0f} s (not timed)", flush=True)
        try:
            harness.load_installer_images(say=lambda _: None)
            yield harness.installer_args()
        finally:
            if started:
                harness.down(say=lambda _: None)
                left = harness.leftovers()
                if left:
                    raise SystemExit("the test clusters' teardown left: " + "; ".join(left))


def deploy(*args: str, extra: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`python -m spire_fabric.deploy …` like a user runs it (``extra`` after the rest)."""
    argv = [sys.executable, "-m", "spire_fabric.deploy", *args, *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
