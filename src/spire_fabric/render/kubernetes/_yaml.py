"""YAML text for manifests: block style, no aliases, literal blocks for multi-line text
(so server.conf reads as HCL in review), insertion order kept (objects are built in the
conventional apiVersion/kind/metadata/spec order)."""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def dump_documents(objects: list[dict[str, Any]]) -> str:
    return "".join(
        "---\n" + yaml.dump(o, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
        for o in objects
    )
