"""Which keys of a rendered SPIRE config changed: dotted key paths for `plan`.

`plan` said "update config agents/a/agent.conf" and nothing more; a user changing
``--port-base`` or a TTL wants to see ``agent.server_port`` or ``server.default_x509_svid_ttl``.
Both sides of the comparison are written by our own HCL writer (``render_server_config``,
``render_agent_config``; the file on disk by an earlier `up`), so this reads exactly its
line format: ``name "label" {`` opens a block, ``key = value`` sets a scalar or a list,
``key = {`` opens a map, ``}`` closes, ``#`` comments. A full HCL parser (python-hcl2,
which brings lark) would add a dependency for a diff of text we generate ourselves. A line
this reader does not understand (a file edited by hand) is kept whole under its block, so
it still shows up as a change instead of vanishing.
"""

from __future__ import annotations

import re

__all__ = ["changed_keys", "config_keys"]

_BLOCK = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)((?:\s+"(?:[^"\\]|\\.)*")*)\s*\{\s*(\}?)$')
_LABEL = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ATTR = re.compile(r'^("(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$')


def config_keys(text: str) -> dict[str, str]:
    """Dotted key path (block names and labels, then the key) -> the value as written."""
    keys: dict[str, str] = {}
    path: list[str] = []  # one entry per open block: its name and labels, dotted

    def put(key: str, value: str) -> None:
        name, n = key, 1
        while name in keys:  # a repeated block or key: number the later ones
            n += 1
            name = f"{key}[{n}]"
        keys[name] = value

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line == "}":
            if path:
                path.pop()
            continue
        block = _BLOCK.match(line)
        if block:
            parts = [block.group(1), *_LABEL.findall(block.group(2))]
            if block.group(3):  # `name "label" {}`: an empty block still is a setting
                put(".".join([*path, *parts]), "{}")
            else:
                path.append(".".join(parts))
            continue
        attr = _ATTR.match(line)
        if attr:
            key = attr.group(1).strip('"')
            if attr.group(2) == "{":  # a map attribute: its keys nest like a block's
                path.append(key)
            else:
                put(".".join([*path, key]), attr.group(2))
            continue
        put(".".join([*path, line]), "")
    return keys


def changed_keys(old: str, new: str) -> tuple[str, ...]:
    """The dotted key paths that were added, removed or changed, sorted."""
    before, after = config_keys(old), config_keys(new)
    return tuple(sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)))
