"""Hypothesis profiles for the property tests of untrusted-input parsing.

``ci`` (the default) gives every property a fixed example budget that runs in a few
seconds on a 2-core machine, so the test command stays quick and its cost predictable.
``long`` is the benchmark-style run: ``HYPOTHESIS_PROFILE=long pytest
tests/unit/identity -k properties``. Both print Hypothesis' statistics for the property
tests (and only they use Hypothesis, so the rest of the suite stays quiet).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

_COMMON = {
    # No example database: a run does not depend on earlier runs, and a failing example
    # is printed with its reproduction blob instead. (Hypothesis still caches constants
    # in .hypothesis/, which carries its own .gitignore.)
    "database": None,
    "print_blob": True,
    # Certificates and signatures make single examples slow on a loaded CI machine; the
    # budget is the example count, not a per-example deadline.
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow],
}

settings.register_profile("ci", max_examples=150, **_COMMON)
settings.register_profile("long", max_examples=5000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    # pytest_configure is a historic hook: it also runs for this late-loaded conftest.
    config.option.hypothesis_show_statistics = True
