"""`entries list|apply --output json`: one document, the list last and one item per line."""

from __future__ import annotations

import json

import pytest

from spire_fabric.entries._cli import _dumps_rows


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"owner": "a", "entries": [{"x": 1, "y": [1, 2]}, {"x": "<\u00e9>"}]}, "entries"),
        ({"owner": "a", "entries": []}, "entries"),
        ({"entries": [{"a": "b"}]}, "entries"),
        ({"owner": "o", "dry_run": True, "changes": [{"a": 1}], "unchanged": 3}, "changes"),
    ],
)
def test_the_document_parses_back_to_what_was_given(doc: dict, key: str) -> None:
    text = _dumps_rows(doc, key)
    assert json.loads(text) == doc
    rows = doc[key]
    # each item on a line of its own, so a large list stays readable and greppable
    assert sum(line.startswith("    {") for line in text.splitlines()) == len(rows)
