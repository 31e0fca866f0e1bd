"""Reading untrusted YAML with bounds: size, nesting depth, alias expansion, number length.

Why: a topology file may come from anyone (a pull request, a ticket, a download), and
PyYAML's ``safe_load`` bounds none of these. A 561-byte "billion laughs" document
(aliases of aliases) expands to billions of values as soon as anything walks it; 20,000
levels of ``[`` overflow the composer's recursion; a 5,000-digit integer trips Python's
int-conversion limit (CVE-2020-10735's guard) with a ValueError. Here every such input is
refused before it is built, with a :class:`YamlLimitError` that says which limit and where.

How: PyYAML's own parser produces the events (libyaml's C parser when PyYAML has it, which
is 3x faster, else the pure-Python one) and our :class:`_BoundedComposer` builds the node
graph from them. It counts the nesting depth before it descends, and keeps a running count
of the document's values with aliases expanded (an alias adds the whole size of the node it
names, known once that node is complete), so an alias bomb is stopped at the first alias
that takes the count past :data:`MAX_VALUES`, long before anything is expanded, and a large
document where it passes the bound, without parsing the rest. A node that contains an alias of
itself (``&a [*a]``) is refused: nothing in a topology is recursive.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.error import MarkedYAMLError
from yaml.events import AliasEvent, Event
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import Resolver
from yaml.scanner import Scanner

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_INTEGER_DIGITS",
    "MAX_VALUES",
    "YamlLimitError",
    "decode_yaml_bytes",
    "load_bounded_yaml",
]

MAX_BYTES = 1024 * 1024
"""Largest document read (1 MiB): the enterprise preset is 8 KB; a workload takes ~600
bytes, so a thousand of them fit in about 600 KB."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences; a topology nests at most ~8 levels."""
MAX_VALUES = 100_000
"""Most values (scalars, mappings, sequences) the document may have, aliases expanded: the
enterprise preset has 585, a workload ~45, so two thousand workloads fit."""
MAX_INTEGER_DIGITS = 40
"""Longest integer literal; the largest number a topology holds is a port or a count."""

_PROBLEM_CHARS = 200  # a parser's message quotes input (an anchor name, a tag): keep it short


class YamlLimitError(ValueError):
    """The text is not acceptable YAML for us: a limit was passed, it is not UTF-8, or it
    is not valid YAML. ``where`` is ``"line L, column C"`` (1-based) when known, else
    ``""``; ``reason`` is one line that says what is wrong."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}" if where else reason)


def _at(mark: Any) -> str:
    """``line L, column C`` (1-based) of a PyYAML or libyaml mark, "" without one."""
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


class _LimitPassed(Exception):
    """Raised inside the composer/constructor; PyYAML lets it through unchanged."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.where = _at(mark)


def _one_line(text: str) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= _PROBLEM_CHARS else flat[: _PROBLEM_CHARS - 3] + "..."


class _BoundedComposer(Composer):
    """PyYAML's composer with a depth limit and the expanded size of every node."""

    if TYPE_CHECKING:  # supplied by the parser it is mixed with (CParser or Parser)

        def check_event(self, *choices: type[Event]) -> bool: ...
        def peek_event(self) -> Event: ...

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._aliases = 0
        # The document's size so far with aliases expanded: +1 per node as it starts, +the
        # whole size of a node each time an alias names it. It only grows, so a document
        # is refused at the first node or alias that takes it past the bound, not after
        # its (possibly huge) remainder has been parsed.
        self._expanded = 0
        # Expanded size by node id; a node is in here once it is complete, so an alias of
        # a node that is not (still being composed) is an alias of one of its ancestors.
        self._sizes: dict[int, int] = {}

    def _count(self, values: int, mark: Any) -> None:
        self._expanded += values
        if self._expanded > MAX_VALUES:
            how = "expands through aliases to" if self._aliases else "has"
            raise _LimitPassed(problem=f"{how} more than {MAX_VALUES:,} values", mark=mark)

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            aliased = super().compose_node(parent, index)  # refuses an undefined alias
            size = None if aliased is None else self._sizes.get(id(aliased))
            if size is None:
                anchor = _one_line(str(getattr(event, "anchor", "")))[:60]
                raise _LimitPassed(
                    problem=f"alias *{anchor} refers to a node that contains it "
                    "(a recursive structure)",
                    mark=event.start_mark,
                )
            self._aliases += 1
            self._count(size, event.start_mark)
            return aliased
        start = self.peek_event().start_mark
        if self._depth >= MAX_DEPTH:
            raise _LimitPassed(problem=f"nested more than {MAX_DEPTH} levels deep", mark=start)
        self._count(1, start)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is None:  # pragma: no cover - compose_node returns None only at stream end
            return None
        self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in _children(node))
        return node


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


class _BoundedConstructor(SafeConstructor):
    """SafeConstructor that refuses over-long integers and turns the ValueErrors of its
    own conversions (``2001-13-01`` as a date, for one) into marked errors."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as e:
            raise ConstructorError(
                None, None, f"cannot read this value: {e}", node.start_mark
            ) from None

    def construct_yaml_int(self, node: ScalarNode) -> int:
        digits = len(str(node.value).lstrip("+-").replace("_", ""))
        if digits > MAX_INTEGER_DIGITS:
            raise _LimitPassed(
                problem=f"integer of {digits} digits; at most {MAX_INTEGER_DIGITS} are read",
                mark=node.start_mark,
            )
        return super().construct_yaml_int(node)


# What add_constructor does (a copy of the table for this class), without its stub's bound
# to PyYAML's own loader classes.
_BoundedConstructor.yaml_constructors = {
    **SafeConstructor.yaml_constructors,
    "tag:yaml.org,2002:int": _BoundedConstructor.construct_yaml_int,
}


class _PyLoader(Reader, Scanner, Parser, _BoundedComposer, _BoundedConstructor, Resolver):
    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _BoundedComposer.__init__(self)
        _BoundedConstructor.__init__(self)
        Resolver.__init__(self)


def _loader_class() -> type[Any]:
    """The composer, constructor and resolver above on libyaml's event parser if present."""
    try:
        from yaml._yaml import CParser
    except ImportError:  # pragma: no cover - PyYAML built without libyaml
        return _PyLoader

    # Composer comes first in the MRO so its Python get_single_node/compose_* are used (with
    # our limits); CParser supplies only the events.
    class _CLoader(_BoundedComposer, CParser, _BoundedConstructor, Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _BoundedComposer.__init__(self)
            _BoundedConstructor.__init__(self)
            Resolver.__init__(self)

    return _CLoader


_LOADER = _loader_class()


def decode_yaml_bytes(data: bytes) -> str:
    """UTF-8 text of ``data`` (a UTF-8 BOM is dropped), or a YamlLimitError saying what the
    bytes are instead. YAML 1.2 also allows UTF-16/32, but SPIRE's own configs and every
    tool we hand the file to expect UTF-8, so we say so rather than guess."""
    if len(data) > MAX_BYTES:
        raise YamlLimitError("", f"larger than {MAX_BYTES:,} bytes; a topology is far smaller")
    boms = {
        "UTF-32": (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE),
        "UTF-16": (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE),
    }
    for name, marks in boms.items():
        if data.startswith(marks):
            raise YamlLimitError("", f"the file is {name} text; save it as UTF-8")
    if b"\x00" in data[:4096]:
        raise YamlLimitError(
            "",
            "the file has NUL bytes (UTF-16 without a byte order mark, or binary); "
            "save it as UTF-8 text",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise YamlLimitError(
            f"line {line}",
            f"not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} cannot start "
            "or continue a UTF-8 character; save the file as UTF-8",
        ) from None


def load_bounded_yaml(text: str) -> Any:
    """One YAML document from ``text`` within the limits above, as ``yaml.safe_load`` would
    build it. Every problem (a limit, bad YAML) is a :class:`YamlLimitError` of one line."""
    if len(text) > MAX_BYTES:
        raise YamlLimitError("", f"larger than {MAX_BYTES:,} characters; a topology is far smaller")
    loader = None
    try:
        loader = _LOADER(text)  # the pure-Python Reader already checks characters here
        return loader.get_single_data()
    except _LimitPassed as e:
        raise YamlLimitError(e.where, _one_line(e.problem)) from None
    except MarkedYAMLError as e:
        reason = _one_line(e.problem or e.context or "invalid")
        raise YamlLimitError(_at(e.problem_mark), f"not valid YAML: {reason}") from None
    except UnicodeError as e:  # a str with lone surrogates cannot be UTF-8 encoded
        raise YamlLimitError("", f"not valid text: {e}") from None
    except ReaderError as e:
        code = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "?")
        raise YamlLimitError(
            f"character {e.position + 1}",
            f"not valid YAML: the control character U+{code:04X} is not allowed in YAML text",
        ) from None
    except yaml.YAMLError as e:  # pragma: no cover - PyYAML raises only the kinds above
        raise YamlLimitError("", f"not valid YAML: {_one_line(str(e))}") from None
    finally:
        if loader is not None:
            loader.dispose()
