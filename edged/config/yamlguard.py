"""Limits on a YAML document's shape, checked before anything recursive touches it.

PyYAML builds nodes and objects recursively and expands aliases in full, so a hostile or broken
file can exhaust the stack (thousands of nested brackets), loop forever (an alias inside its own
anchor) or take all memory ("billion laughs": aliases of aliases). :func:`check_shape` reads the
parser's event stream, which is produced without recursion, and measures what composing the
document would build: the nesting depth and the number of values once every alias is expanded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import yaml

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (a real config needs about 8)."""
MAX_VALUES = 200_000
"""Most values (scalars, mappings and lists) the document may hold once aliases are expanded."""


class ShapeError(Exception):
    """The document is too deep, too large once expanded, or refers to itself."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass
class _Open:
    """A mapping or list whose end event has not come yet."""

    anchor: str | None
    values: int = 1  # itself, plus everything inside so far
    height: int = 1  # levels of nesting from itself down


@dataclass
class _Shape:
    """The running measurements of one stream."""

    max_depth: int
    max_values: int
    stack: list[_Open] = field(default_factory=list)
    anchors: dict[str, tuple[int, int]] = field(default_factory=dict)  # -> (values, height)
    total: int = 0

    def count(self, line: int, values: int) -> None:
        """``values`` more values in the expanded document."""
        self.total += values
        if self.total > self.max_values:
            raise ShapeError(line, f"more than {self.max_values} values once aliases are expanded")

    def nest(self, values: int, height: int) -> None:
        """A finished value goes into the innermost open mapping or list."""
        if self.stack:
            parent = self.stack[-1]
            parent.values += values
            parent.height = max(parent.height, height + 1)

    def open(self, line: int, anchor: str | None) -> None:
        """A mapping or list starts."""
        if len(self.stack) >= self.max_depth:
            raise ShapeError(line, f"nested deeper than {self.max_depth} levels")
        self.count(line, 1)
        self.stack.append(_Open(anchor))

    def close(self) -> None:
        """The innermost mapping or list ends (its content is counted already)."""
        done = self.stack.pop()
        if done.anchor is not None:
            self.anchors[done.anchor] = (done.values, done.height)
        self.nest(done.values, done.height)

    def scalar(self, line: int, anchor: str | None) -> None:
        """A plain value."""
        if anchor is not None:
            self.anchors[anchor] = (1, 0)
        self.count(line, 1)
        self.nest(1, 0)

    def alias(self, line: int, anchor: str) -> None:
        """An alias: it stands for everything its anchor holds."""
        if any(node.anchor == anchor for node in self.stack):
            raise ShapeError(line, f"alias *{anchor} refers to itself")
        values, height = self.anchors.get(anchor, (1, 0))  # undefined: the composer says so
        if len(self.stack) + height > self.max_depth:
            raise ShapeError(line, f"alias *{anchor} nests deeper than {self.max_depth} levels")
        self.count(line, values)
        self.nest(values, height)


def _line(event: yaml.Event) -> int:
    return event.start_mark.line + 1 if event.start_mark is not None else 1


def check_shape(
    events: Iterable[yaml.Event], max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES
) -> list[yaml.Event]:
    """Read ``events`` and return them; raise :class:`ShapeError` past a limit.

    Syntax errors surface as PyYAML's own exceptions. Undefined and duplicate anchors are left
    for the composer to report.
    """
    shape = _Shape(max_depth, max_values)
    kept: list[yaml.Event] = []
    for event in events:
        kept.append(event)
        line = _line(event)
        if isinstance(event, yaml.DocumentStartEvent):
            shape.anchors.clear()
        elif isinstance(event, yaml.CollectionStartEvent):
            shape.open(line, event.anchor)
        elif isinstance(event, yaml.CollectionEndEvent):
            shape.close()
        elif isinstance(event, yaml.ScalarEvent):
            shape.scalar(line, event.anchor)
        elif isinstance(event, yaml.AliasEvent) and event.anchor is not None:
            shape.alias(line, event.anchor)
    return kept
