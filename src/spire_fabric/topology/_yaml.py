"""YAML a person can edit, and that round-trips byte for byte.

Shape: every dataclass is a mapping in field order; ``None`` and empty lists are left out
when that is the default (an explicit ``null`` switches a default-on part off);
durations are Go-style strings ("6h"); a choice between variants (datastore, upstream
authority, node attestors) is a mapping keyed by the variant's SPIRE plugin name, e.g.
``datastore: {mysql: {dsn: ...}}``. Problems while reading are reported like validation
problems, with the path of the bad field.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any, Union

import yaml

from spire_fabric.identity import TrustDomain
from spire_fabric.topology import _model as m
from spire_fabric.topology._durations import format_duration, parse_duration
from spire_fabric.topology._errors import Problem, TopologyError, shown
from spire_fabric.topology._trust_domains import topology_trust_domain
from spire_fabric.topology._validate import validate_topology
from spire_fabric.topology._yaml_limits import (
    MAX_BYTES,
    YamlLimitError,
    decode_yaml_bytes,
    load_bounded_yaml,
)

HEADER = (
    "# spire_fabric topology. Durations are Go-style (6h, 30m, 1h30m).\n"
    "# Fields under `kubernetes:` apply only to the kubernetes target.\n"
)

_TAGS: dict[type, str] = {
    m.SqliteDatastore: "sqlite",
    m.MySqlDatastore: "mysql",
    m.PostgresDatastore: "postgres",
    m.DiskUpstreamAuthority: "disk",
    m.SpireUpstreamAuthority: "spire",
    m.JoinTokenAttestor: "join_token",
    m.K8sPsatAttestor: "k8s_psat",
}
# Tuples of variants written as one mapping keyed by variant (each variant at most once).
_TAGGED_TUPLES = {(m.Server, "node_attestors")}


def dump_topology(topology: m.Topology) -> str:
    """Serialise ``topology`` to canonical YAML (same topology, same bytes)."""
    body = yaml.safe_dump(
        _encode(topology),
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return HEADER + body


def load_topology(source: str | os.PathLike[str], *, validate: bool = True) -> m.Topology:
    """Read a topology from a file (a path, or a str ending in .yaml/.yml) or YAML text.

    Raises :class:`TopologyError` for YAML syntax errors, unknown or mistyped fields, and
    (unless ``validate=False``) every rule of :func:`validate_topology`. Input is bounded
    (see ``_yaml_limits``: 1 MiB, UTF-8, 64 levels, 100,000 values with aliases expanded,
    40-digit integers); what passes a bound is one problem naming the file and the limit.
    """
    origin = ""
    if isinstance(source, os.PathLike) or (
        "\n" not in source and source.endswith((".yaml", ".yml"))
    ):
        path = Path(source)
        origin = str(path)
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_BYTES + 1)  # never more than the cap, whatever the file
        except OSError as e:
            raise TopologyError([Problem(origin, f"cannot read file: {e.strerror}")]) from e
        try:
            text = decode_yaml_bytes(raw)
        except YamlLimitError as e:
            raise TopologyError([Problem(_where(origin, e.where), e.reason)]) from None
    else:
        text = str(source)
    try:
        data = load_bounded_yaml(text)
    except YamlLimitError as e:
        raise TopologyError([Problem(_where(origin, e.where or "yaml"), e.reason)]) from None
    if not isinstance(data, dict):
        where = origin or "<root>"
        raise TopologyError([Problem(where, "expected a mapping with at least `name:`")])
    reader = _Reader()
    topology = reader.read(m.Topology, data, "")
    if reader.problems:
        raise TopologyError(reader.problems)
    return validate_topology(topology) if validate else topology


def _where(origin: str, where: str) -> str:
    """``file.yaml, line 3, column 5`` (or the parts there are)."""
    return ", ".join(p for p in (origin, where) if p) or "yaml"


# --- encoding -----------------------------------------------------------------------------


def _encode(value: Any, owner: type | None = None, field_name: str = "") -> Any:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, TrustDomain):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if (v is None or v == () or v == "") and _default(f) == v:
                continue
            if (type(value), f.name) in _TAGGED_TUPLES:
                out[f.name] = {_TAGS[type(x)]: _encode(x) for x in v}
            elif type(v) in _TAGS:
                out[f.name] = {_TAGS[type(v)]: _encode(v)}
            else:
                out[f.name] = _encode(v, type(value), f.name)
        return out
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


# --- decoding -----------------------------------------------------------------------------


def _label(index: int, item: Any) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    if isinstance(name, str) and 0 < len(name) <= 63:  # a DNS-1123 label's length
        return name
    return str(index)


class _Reader:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def bad(self, path: str, message: str) -> None:
        self.problems.append(Problem(path or "<root>", message))

    def read(self, cls: type, data: Any, path: str) -> Any:
        if not isinstance(data, dict):
            self.bad(path, f"expected a mapping for {cls.__name__}, got {type(data).__name__}")
            return None
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, raw in data.items():
            part = key if isinstance(key, str) and len(key) <= 63 else shown(key, 40)
            sub = f"{path}.{part}" if path else part
            if key not in fields:
                self.bad(sub, f"unknown field; {cls.__name__} has: {', '.join(fields)}")
                continue
            if (cls, key) in _TAGGED_TUPLES:
                kwargs[key] = self._tagged_tuple(hints[key], raw, sub)
            else:
                kwargs[key] = self._value(hints[key], raw, sub)
        missing = [
            n
            for n, f in fields.items()
            if n not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        for n in missing:
            self.bad(f"{path}.{n}" if path else n, "required field is missing")
        if missing:
            return None
        try:
            return cls(**kwargs)
        except TopologyError as e:
            self.problems.extend(e.problems)
            return None
        except (TypeError, ValueError) as e:
            self.bad(path, str(e))
            return None

    def _tagged_tuple(self, hint: Any, raw: Any, path: str) -> tuple[Any, ...]:
        (variant_union, _) = typing.get_args(hint)
        if not isinstance(raw, dict):
            self.bad(path, "expected a mapping keyed by plugin name, e.g. {join_token: {}}")
            return ()
        return tuple(self._variant(variant_union, {k: v}, path) for k, v in raw.items())

    def _variant(self, union: Any, raw: Any, path: str) -> Any:
        options = {_TAGS[c]: c for c in typing.get_args(union)}
        if not isinstance(raw, dict) or len(raw) != 1:
            self.bad(path, f"expected exactly one of: {', '.join(options)}")
            return None
        ((tag, body),) = raw.items()
        if tag not in options:
            known = ", ".join(options)
            self.bad(f"{path}.{shown(tag, 40)}", f"unknown kind; expected one of: {known}")
            return None
        return self.read(options[tag], body if body is not None else {}, f"{path}.{tag}")

    def _value(self, hint: Any, raw: Any, path: str) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (Union, types.UnionType):
            non_none = [a for a in args if a is not type(None)]
            if raw is None and len(non_none) < len(args):
                return None
            if len(non_none) == 1:
                return self._value(non_none[0], raw, path)
            if all(a in _TAGS for a in non_none):
                return self._variant(Union[tuple(non_none)], raw, path)  # noqa: UP007
            self.bad(path, "unsupported field type")  # pragma: no cover - model bug
            return None
        if origin is tuple:
            if not isinstance(raw, list):
                self.bad(path, f"expected a list, got {type(raw).__name__}")
                return ()
            return tuple(
                self._value(args[0], item, f"{path}[{_label(i, item)}]")
                for i, item in enumerate(raw)
            )
        if origin is typing.Literal:
            if raw not in args:
                self.bad(path, f"{shown(raw)} is not one of: {', '.join(map(str, args))}")
            return raw
        if hint is TrustDomain:
            try:
                return topology_trust_domain(raw, path)
            except TopologyError as e:
                self.problems.extend(e.problems)
                return None
        if hint is timedelta:
            try:
                return parse_duration(raw)
            except ValueError as e:
                self.bad(path, str(e))
                return timedelta(0)
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            if hint in _TAGS:
                self.bad(path, "internal: variant without tag")  # pragma: no cover
            return self.read(hint, raw, path)
        if hint is bool:
            if not isinstance(raw, bool):
                self.bad(path, f"expected true or false, got {shown(raw)}")
            return raw
        if hint is int:
            if not isinstance(raw, int) or isinstance(raw, bool):
                self.bad(path, f"expected an integer, got {shown(raw)}")
            return raw
        if hint is str:
            if not isinstance(raw, str):
                self.bad(path, f"expected a string, got {shown(raw)}")
            return raw
        self.bad(path, f"unsupported field type {hint!r}")  # pragma: no cover - model bug
        return raw
