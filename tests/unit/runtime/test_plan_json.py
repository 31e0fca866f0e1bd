"""``DeploymentPlan.to_json`` writes the changes by hand for speed; it must stay byte for
byte what ``json.dumps(..., indent=2)`` gives for the same document."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from spire_fabric.runtime.deployment import Change, DeploymentPlan
from spire_fabric.topology import PublishedPort


def _reference(plan: DeploymentPlan) -> str:
    """The plan as ``json.dumps`` writes it (the encoding before the hand-written one)."""
    return json.dumps(
        {
            "topology": plan.topology,
            "target": plan.target,
            "changes": [
                {
                    "action": c.action,
                    "kind": c.kind,
                    "name": c.name,
                    "detail": c.detail,
                    "fields": list(c.fields),
                }
                for c in plan.changes
            ],
            "notes": list(plan.notes),
            "unchanged": plan.unchanged,
            "published": [asdict(p) for p in plan.published],
            "versions": dict(plan.versions),
        },
        indent=2,
    )


CHANGES = (
    Change("create", "entry", "spiffe://x.org/w", "on s, parent spiffe://x.org/a"),
    Change("update", "entry", "spiffe://x.org/v", "on s", ("selectors", "x509_svid_ttl")),
    Change("update", "config", 'server "a"\\b', "é ünïcode\nnew line\t", ("one",)),
    Change("set", "setting", "", ""),
)


@pytest.mark.parametrize(
    "plan",
    [
        DeploymentPlan("t", "local"),
        DeploymentPlan("t", "local", CHANGES),
        DeploymentPlan("t", "local", CHANGES[:1]),
        # a topology name holding the very text the encoder looks for
        DeploymentPlan('x\n  "changes": []', "local", CHANGES, notes=('"changes": []',)),
        DeploymentPlan(
            "scale",
            "kubernetes",
            CHANGES,
            notes=("s is not running", "ü"),
            unchanged=3,
            published=(PublishedPort(8081, "127.0.0.1", "server/s", "API", "agents"),),
            versions=(("server/s", "1.13.3"), ("agent/a", "1.13.3")),
        ),
    ],
)
def test_to_json_is_what_json_dumps_writes(plan: DeploymentPlan) -> None:
    assert plan.to_json() == _reference(plan)
    json.loads(plan.to_json())
