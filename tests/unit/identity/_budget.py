"""Per-property example budgets, as multiples of the loaded Hypothesis profile's budget.

Cheap properties (string parsing) get more examples than expensive ones (certificate
chains) within the same few seconds; the ``long`` profile scales all of them alike.
"""

from __future__ import annotations

from hypothesis import settings


def budget(factor: float) -> settings:
    """Settings with ``factor`` times the current profile's ``max_examples``."""
    return settings(max_examples=max(1, round(settings.default.max_examples * factor)))
