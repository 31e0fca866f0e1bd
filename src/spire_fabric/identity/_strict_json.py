"""Strict JSON for untrusted identity documents (JWT headers and claims, JWKS bundles).

``json.loads`` is lenient in ways that let one document be read several ways: it takes
UTF-16/32 bytes, a byte order mark, ``NaN``/``Infinity``, numbers that overflow to
``inf``, lone surrogates, and duplicate member names (last one wins). A token or bundle
that two parsers read differently defeats deny-lists and replay caches, so this reader
refuses all of them with a message naming the rule, and never lets ``RecursionError``
or ``UnicodeDecodeError`` escape.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

__all__ = ["MAX_DEPTH", "NonFiniteNumberError", "StrictJsonError", "decode_utf8", "loads_strict"]

# Nesting bound, checked before parsing so a "[[[[..." bomb cannot reach the C scanner's
# recursion limit (whose depth would depend on the caller's stack). go's encoding/json
# allows 10000; no SPIFFE document nests more than 4.
MAX_DEPTH = 64

_SPECIAL = re.compile(r'[\[\]{}"\\]')
_SHOWN = 40


class StrictJsonError(ValueError):
    """The bytes are not strict JSON; callers wrap it in their own identity error."""


class NonFiniteNumberError(StrictJsonError):
    """``NaN``, ``Infinity`` or a number beyond double range; callers may name the member."""


def _refuse_constant(name: str) -> NoReturn:
    # RFC 8259 section 6: "Numeric values that cannot be represented ... (such as Infinity
    # and NaN) are not permitted."
    raise NonFiniteNumberError(f"{name} is not a JSON number (RFC 8259 section 6)")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        # RFC 8259 section 6 / RFC 7493 section 2.2: a number beyond IEEE 754 double
        # range; go's encoding/json refuses it too ("value out of range").
        shown = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
        raise NonFiniteNumberError(f"number {shown} is out of range (RFC 7493 section 2.2)")
    return value


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # RFC 8259 section 4 leaves duplicates to the parser; go-jose refuses them, and a
        # token read "last one wins" here and "first one wins" elsewhere is two tokens.
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise StrictJsonError(f"duplicate member name {name[:_SHOWN]!r}")
            seen.add(name)
    return obj


_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_members,
    parse_constant=_refuse_constant,
    parse_float=_finite_float,
)


def _check_depth(text: str) -> None:
    """Track bracket depth outside strings; only called when there are more than MAX_DEPTH.

    Jumps between the characters that matter with one regex and keeps the string/escape
    state here, so it stays linear (a regex matching whole strings would backtrack
    quadratically on ``"\\"\\"\\"...``).
    """
    depth = 0
    in_string = False
    skip_to = -1
    for m in _SPECIAL.finditer(text):
        at = m.start()
        if at < skip_to:
            continue  # the character after a backslash
        c = m.group()
        if in_string:
            if c == "\\":
                skip_to = at + 2
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise StrictJsonError(f"JSON nests deeper than {MAX_DEPTH} levels")
        elif c in "]}":
            depth -= 1


def _check_strings(value: Any) -> None:
    """Refuse lone UTF-16 surrogates (RFC 8259 section 8.2, RFC 7493 section 2.1).

    ``"\\ud800"`` decodes to a str that cannot be encoded as UTF-8 again, so a claim that
    carries one crashes whoever logs or re-serializes it. Walked with an explicit stack:
    the depth is bounded, but no recursion is cheaper still.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            items: list[Any] = [item]
        elif isinstance(item, dict):
            items = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            items = item
        else:
            continue
        for v in items:
            if isinstance(v, str):
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    raise StrictJsonError(
                        "string holds a lone UTF-16 surrogate escape (RFC 8259 section 8.2)"
                    ) from None
            elif isinstance(v, (dict, list)):
                stack.append(v)


def _decode(text: str) -> Any:
    """``_DECODER.decode`` without its whitespace handling when there is none to handle.

    The C scanner reads one value at offset 0; if that value is the whole text, it is
    what ``decode`` would return. Anything else (leading or trailing whitespace, an
    error) takes ``decode`` itself, which also words the error.
    """
    try:
        # scan_once is the decoder's (undocumented, stable since 2.6) C scanner; typeshed
        # does not list it.
        value, end = _DECODER.scan_once(text, 0)  # type: ignore[attr-defined]
    except StopIteration:
        return _DECODER.decode(text)
    return value if end == len(text) else _DECODER.decode(text)


def decode_utf8(data: bytes | bytearray | str) -> str:
    """The text of a JSON document that must be UTF-8 without a byte order mark.

    RFC 8259 section 8.1: JSON exchanged between systems MUST be UTF-8 and a BOM MUST NOT
    be added. ``json.loads`` on bytes would silently accept UTF-16 and UTF-32 instead.
    """
    if isinstance(data, str):
        text = data
    else:
        if b"\x00" in data:
            # A NUL cannot occur in UTF-8 JSON (control characters must be escaped), but
            # it is in every UTF-16/UTF-32 encoding of ASCII text.
            raise StrictJsonError("not UTF-8 JSON: NUL byte (UTF-16 or UTF-32?) (RFC 8259 8.1)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise StrictJsonError(f"not UTF-8 (RFC 8259 section 8.1): {e.reason}") from None
    if text[:1] == "\ufeff":
        raise StrictJsonError("byte order mark before JSON (RFC 8259 section 8.1)")
    return text


def loads_strict(data: bytes | bytearray | str) -> Any:
    """Parse JSON, refusing everything that RFC 8259 / RFC 7493 leave ambiguous.

    Raises StrictJsonError (a ValueError) with a message naming the broken rule. It runs
    on every JWT-SVID validation, so the common case costs two counts and one scan.
    """
    text = decode_utf8(data)
    # Fewer brackets than the bound cannot nest deeper than it; only then scan.
    if text.count("[") + text.count("{") > MAX_DEPTH:
        _check_depth(text)
    try:
        value = _decode(text)
    except StrictJsonError:
        raise
    except RecursionError:
        # Unreachable after _check_depth at ordinary stack depths; kept as a backstop.
        raise StrictJsonError(f"JSON nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:
        # JSONDecodeError, and int() refusing a number of more than 4300 digits.
        raise StrictJsonError(str(e)) from None
    if "\\u" in text:
        _check_strings(value)
    return value
