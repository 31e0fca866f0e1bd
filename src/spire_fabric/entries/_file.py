"""Registration entries from a YAML file: the input of `python -m spire_fabric.entries`.

The format (every key but `entries` and each entry's `spiffe_id`, `parent_id` and
`selectors` is optional)::

    owner: payments                # prefix of the entry IDs apply_entries owns
    defaults:                      # merged into every entry (an entry's own keys win)
      parent_id: spiffe://example.org/spire/agent/join_token/abc
      x509_svid_ttl: 1h
    entries:
      - spiffe_id: spiffe://example.org/payments/api
        parent_id: spiffe://example.org/spire/agent/join_token/abc
        selectors: [unix:uid:1000]         # type:value, split at the first ':'
        x509_svid_ttl: 1h                  # seconds (int) or 1h30m / 90s; 0 = default
        jwt_svid_ttl: 5m
        federates_with: [partner.org]      # trust domain names (or spiffe://partner.org)
        dns_names: [api.payments.svc]
        hint: internal
        admin: false
        downstream: false
        store_svid: false
        expires_at: 2030-01-01T00:00:00Z   # Unix seconds or an ISO 8601 time; 0 = never

Every error names the file and the exact place, as `entries[2].selectors[0]: ...`, and
is raised before anything talks to SPIRE. Two entries with the same (spiffe_id,
parent_id) are refused here, naming both, because they would share one owned entry ID.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spire_fabric.entries._reconcile import check_owner
from spire_fabric.server._errors import SpireValidationError
from spire_fabric.server._models import (
    Entry,
    Selector,
    spiffe_id_arg,
    trust_domain_arg,
    ttl_arg,
)

if TYPE_CHECKING:
    import yaml

__all__ = [
    "ENTRY_KEYS",
    "EntriesFile",
    "EntriesFileError",
    "entry_to_dict",
    "load_entries_file",
    "parse_entries",
]

ENTRY_KEYS = (
    "spiffe_id",
    "parent_id",
    "selectors",
    "x509_svid_ttl",
    "jwt_svid_ttl",
    "federates_with",
    "dns_names",
    "hint",
    "admin",
    "downstream",
    "store_svid",
    "expires_at",
)
_REQUIRED = ("spiffe_id", "parent_id", "selectors")
_TOP_KEYS = ("owner", "defaults", "entries")
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class EntriesFileError(SpireValidationError):
    """A file that cannot become entries; `where` is the place, e.g. `entries[2].hint`."""

    def __init__(self, source: str, where: str, problem: str) -> None:
        self.source = source
        self.where = where
        self.problem = problem
        place = f"{source}: {where}: " if where else f"{source}: "
        super().__init__(place + problem)


@dataclass(frozen=True)
class EntriesFile:
    """What a file declares: its owner (None if it names none) and its entries, in order."""

    owner: str | None
    entries: tuple[Entry, ...]
    source: str = "<string>"


def load_entries_file(path: str | Path) -> EntriesFile:
    """Read and check a YAML entries file (see the module docstring for the format)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise EntriesFileError(source, "", f"cannot read the file: {err.strerror}") from err
    return parse_entries(text, source=source)


def _safe_loader() -> type[yaml.SafeLoader]:
    """libyaml's parser with PyYAML's safe constructor (the same objects as yaml.safe_load,
    no arbitrary Python): the pure-Python parser took a second per thousand entries, the
    cost of a no-change `apply`. PyYAML without libyaml falls back to the pure-Python one.
    Imported here, not at the top: `entries list` reads no file, and PyYAML was a twentieth
    of its start-up."""
    import yaml

    loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return loader


def parse_entries(text: str, *, source: str = "<string>") -> EntriesFile:
    """Parse YAML text into entries; `EntriesFileError` names the first bad field."""
    import yaml

    try:
        data = yaml.load(text, Loader=_safe_loader())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise EntriesFileError(source, where, f"not valid YAML: {problem}") from err
    return entries_from_data(data, source=source)


def entries_from_data(data: Any, *, source: str = "<string>") -> EntriesFile:
    """Entries from already-loaded YAML/JSON data (a mapping with an `entries` list)."""

    def fail(where: str, problem: str) -> EntriesFileError:
        return EntriesFileError(source, where, problem)

    if not isinstance(data, Mapping):
        raise fail("", "must be a mapping with an 'entries' list at the top")
    _no_unknown_keys(data, _TOP_KEYS, "", fail)
    owner = data.get("owner")
    if owner is not None:
        if not isinstance(owner, str):
            raise fail("owner", f"must be a string, got {owner!r}")
        try:
            check_owner(owner)
        except SpireValidationError as err:
            raise fail("owner", str(err)) from err
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise fail("defaults", "must be a mapping of entry fields")
    _no_unknown_keys(defaults, ENTRY_KEYS, "defaults", fail)
    items = data.get("entries")
    if items is None:
        raise fail("entries", "is missing; list the entries under 'entries:'")
    if not isinstance(items, list):
        raise fail("entries", f"must be a list, got {type(items).__name__}")
    entries: list[Entry] = []
    seen: dict[tuple[str, str], int] = {}
    for i, item in enumerate(items):
        where = f"entries[{i}]"
        if not isinstance(item, Mapping):
            raise fail(where, f"must be a mapping of entry fields, got {item!r}")
        _no_unknown_keys(item, ENTRY_KEYS, where, fail)
        entry = _entry({**defaults, **item}, where, fail)
        key = (str(entry.spiffe_id), str(entry.parent_id))
        if key in seen:
            raise fail(
                where,
                f"same spiffe_id and parent_id as entries[{seen[key]}] ({key[0]} under "
                f"{key[1]}); each pair may appear once",
            )
        seen[key] = i
        entries.append(entry)
    return EntriesFile(owner, tuple(entries), source)


Fail = Callable[[str, str], EntriesFileError]


def _no_unknown_keys(
    data: Mapping[Any, Any], allowed: tuple[str, ...], where: str, fail: Fail
) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            prefix = f"{where}." if where else ""
            raise fail(f"{prefix}{key}", f"unknown field{hint}; known: {', '.join(allowed)}")


def _entry(item: Mapping[str, Any], where: str, fail: Fail) -> Entry:
    for key in _REQUIRED:
        if item.get(key) in (None, "", []):
            raise fail(f"{where}.{key}", "is required")

    def field(key: str, convert: Callable[[Any], Any]) -> Any:
        try:
            return convert(item[key])
        except SpireValidationError as err:
            raise fail(f"{where}.{key}", _bare(err)) from err

    def each(key: str, convert: Callable[[Any], Any]) -> tuple[Any, ...]:
        values = item.get(key, [])
        if isinstance(values, str):
            values = [values]  # a single value written without brackets
        if not isinstance(values, list):
            raise fail(f"{where}.{key}", f"must be a list, got {values!r}")
        out = []
        for j, value in enumerate(values):
            try:
                out.append(convert(value))
            except SpireValidationError as err:
                raise fail(f"{where}.{key}[{j}]", _bare(err)) from err
        return tuple(out)

    kwargs: dict[str, Any] = {
        "spiffe_id": field("spiffe_id", lambda v: spiffe_id_arg(_str(v), "it")),
        "parent_id": field("parent_id", lambda v: spiffe_id_arg(_str(v), "it")),
        "selectors": each("selectors", lambda v: Selector.parse(_str(v))),
        "federates_with": each("federates_with", lambda v: trust_domain_arg(_str(v), "it")),
        "dns_names": each("dns_names", _dns_name),
    }
    for key in ("x509_svid_ttl", "jwt_svid_ttl"):
        if key in item:
            kwargs[key] = field(key, _duration)
    for key in ("admin", "downstream", "store_svid"):
        if key in item:
            kwargs[key] = field(key, _bool)
    if "hint" in item:
        kwargs["hint"] = field("hint", _str)
    if "expires_at" in item:
        kwargs["expires_at"] = field("expires_at", _timestamp)
    try:
        return Entry(**kwargs)
    except SpireValidationError as err:  # e.g. the hint length limit
        raise fail(where, str(err)) from err


def _bare(err: SpireValidationError) -> str:
    return str(err).removeprefix("it ")


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise SpireValidationError(f"must be a string, got {value!r}")
    return value


def _dns_name(value: Any) -> str:
    name = _str(value)
    if not name or any(c.isspace() for c in name):
        raise SpireValidationError(f"{name!r} is not a DNS name")
    return name


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpireValidationError(f"must be true or false, got {value!r}")
    return value


def _duration(value: Any) -> int:
    """Seconds from an int or a Go-style duration with h/m/s parts (`1h30m`, `90s`)."""
    if isinstance(value, bool):
        raise SpireValidationError(f"must be seconds or a duration like 1h30m, got {value!r}")
    if isinstance(value, int):
        return ttl_arg(value, "the TTL")
    match = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if not match or not value.strip():
        raise SpireValidationError(
            f"must be seconds or a duration like 1h, 30m, 1h30m or 90s, got {value!r}"
        )
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ttl_arg(hours * 3600 + minutes * 60 + seconds, "the TTL")


def _timestamp(value: Any) -> int:
    if isinstance(value, bool):
        raise SpireValidationError(f"must be Unix seconds or an ISO 8601 time, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise SpireValidationError(f"must be >= 0 (0 = never), got {value}")
        return value
    when = value
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as err:
            raise SpireValidationError(
                f"must be Unix seconds or an ISO 8601 time, got {value!r}"
            ) from err
    if isinstance(when, dt.date) and not isinstance(when, dt.datetime):
        when = dt.datetime(when.year, when.month, when.day)
    if not isinstance(when, dt.datetime):
        raise SpireValidationError(f"must be Unix seconds or an ISO 8601 time, got {value!r}")
    if when.tzinfo is None:
        raise SpireValidationError(f"needs a time zone (e.g. a trailing Z), got {value!r}")
    return int(when.timestamp())


def entry_to_dict(entry: Entry) -> dict[str, Any]:
    """An entry in the file's own vocabulary (plus its `id`): what `list -o json` prints."""
    return {
        "id": entry.id,
        "spiffe_id": str(entry.spiffe_id),
        "parent_id": str(entry.parent_id),
        "selectors": [str(s) for s in entry.selectors],
        "x509_svid_ttl": entry.x509_svid_ttl,
        "jwt_svid_ttl": entry.jwt_svid_ttl,
        "federates_with": [td.name for td in entry.federates_with],
        "dns_names": list(entry.dns_names),
        "hint": entry.hint,
        "admin": entry.admin,
        "downstream": entry.downstream,
        "store_svid": entry.store_svid,
        "expires_at": entry.expires_at,
    }
