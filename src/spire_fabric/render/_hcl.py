"""A tiny HCL (v1, as SPIRE parses it) writer: enough for blocks, labels and scalars.

Writing strings ourselves keeps output byte-stable and readable; there is no HCL library in
our dependency set, and SPIRE's own ``validate`` is the oracle that checks what we write.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from spire_fabric.identity import TrustDomain

# A trust domain is written as its name: the model keeps it typed, HCL has only strings.
Scalar = str | int | bool | TrustDomain
Value = Scalar | Sequence[str | TrustDomain] | Mapping[str, "Value"]

_INDENT = "    "
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote(text: str | TrustDomain) -> str:
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def scalar(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return quote(value)


class HclWriter:
    """Append-only writer; ``block`` is a context manager so nesting reads like the output."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._depth = 0

    def _emit(self, text: str) -> None:
        self._lines.append(f"{_INDENT * self._depth}{text}" if text else "")

    def blank(self) -> None:
        self._lines.append("")

    def comment(self, text: str) -> None:
        for line in text.splitlines():
            self._emit(f"# {line}")

    def attr(self, key: str, value: Value) -> None:
        if isinstance(value, Mapping):
            self._emit(f"{key} = {{")
            self._depth += 1
            for k, v in value.items():
                self.attr(k if _IDENT.fullmatch(k) else quote(k), v)
            self._depth -= 1
            self._emit("}")
        elif isinstance(value, (str, int, bool, TrustDomain)):
            self._emit(f"{key} = {scalar(value)}")
        else:
            self._emit(f"{key} = [{', '.join(quote(v) for v in value)}]")

    def block(self, name: str, *labels: str) -> _Block:
        head = " ".join([name, *(quote(label) for label in labels)])
        return _Block(self, head)

    def empty_block(self, name: str, *labels: str) -> None:
        head = " ".join([name, *(quote(label) for label in labels)])
        self._emit(f"{head} {{}}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


class _Block:
    def __init__(self, writer: HclWriter, head: str) -> None:
        self._w = writer
        self._head = head

    def __enter__(self) -> HclWriter:
        self._w._emit(f"{self._head} {{")
        self._w._depth += 1
        return self._w

    def __exit__(self, *exc: object) -> None:
        self._w._depth -= 1
        self._w._emit("}")
