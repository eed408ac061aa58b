"""YAML to plain Python data, remembering the line of every key and list item.

Duplicate keys are errors (PyYAML silently keeps the last one, which hides typos). Whatever the
text holds, :func:`load_yaml` returns: syntax errors, characters YAML forbids, values PyYAML
cannot build (a 5,000-digit number, February 30th), nesting past a limit and alias bombs all
become problems in :attr:`YamlDocument.problems`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from edged.adapters.base import Loc
from edged.config.report import format_loc, format_problem
from edged.config.yamlguard import ShapeError, check_shape

__all__ = ["YamlDocument", "format_loc", "load_yaml"]

_INT_TAG = "tag:yaml.org,2002:int"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_FAILED = object()


class _Replay(yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """PyYAML's safe composer and constructor, fed with events already parsed and checked."""

    def __init__(self, events: Iterable[yaml.Event]) -> None:
        self._events = deque(events)
        # id(mapping node) -> ids of the key nodes written in it, before merges were flattened
        # into it (an aliased mapping is visited again, already flattened)
        self.own_keys: dict[int, set[int]] = {}
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)

    def check_event(self, *choices: type[yaml.Event]) -> bool:
        """The parser's interface: is the next event one of ``choices`` (any, if none)?"""
        if not self._events:
            return False
        return not choices or isinstance(self._events[0], choices)

    def peek_event(self) -> yaml.Event:
        """The next event, left in place."""
        return self._events[0]

    def get_event(self) -> yaml.Event:
        """The next event, consumed."""
        return self._events.popleft()


@dataclass
class YamlDocument:
    """Parsed data plus the 1-based line of each location in it."""

    path: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def line_of(self, loc: Loc) -> int:
        """The line of ``loc`` or of its nearest ancestor that exists in the file."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return 1

    def problem(self, loc: Loc, message: str) -> str:
        """Format a problem as one line: ``FILE:LINE: key.path: message``."""
        return format_problem(self.path, self.line_of(loc), format_loc(loc), message)


def _reader_line(text: str, exc: yaml.reader.ReaderError) -> int:
    return text.count("\n", 0, max(0, exc.position)) + 1


def load_yaml(text: str, path: str) -> YamlDocument:
    """Parse ``text``; every problem with it lands in ``problems``, nothing is raised."""
    doc = YamlDocument(path=path, data=None)
    try:
        loader = _Replay(check_shape(yaml.parse(text, Loader=yaml.SafeLoader)))
        node = loader.get_single_node()
        doc.lines[()] = 1
        doc.data = None if node is None else _convert(node, loader, doc, ())
    except ShapeError as exc:
        doc.problems.append(format_problem(path, exc.line, "(yaml)", exc.message))
    except yaml.reader.ReaderError as exc:
        message = f"character #x{exc.character:04x} is not allowed in YAML"
        doc.problems.append(format_problem(path, _reader_line(text, exc), "(yaml)", message))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        message = exc.problem or exc.context or "invalid YAML"
        doc.problems.append(format_problem(path, line, "(yaml)", message))
    except yaml.YAMLError as exc:
        doc.problems.append(format_problem(path, 1, "(yaml)", str(exc)))
    if doc.problems:
        doc.data = None
    return doc


def _scalar(node: yaml.Node, loader: _Replay, doc: YamlDocument, loc: Loc) -> Any:
    """Build one value; a value PyYAML cannot build is a problem and becomes ``_FAILED``."""
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, OverflowError) as exc:
        if node.tag == _INT_TAG:
            message = "this number has too many digits"
        elif node.tag == _TIMESTAMP_TAG:
            message = f"not a valid date or time: {exc}"
        else:
            message = f"cannot read this value: {exc}"
        doc.lines.setdefault(loc, node.start_mark.line + 1)
        doc.problems.append(doc.problem(loc, message))
        return _FAILED


def _key_part(key: Hashable) -> str | int:
    if isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
        return key
    return str(key)


def _convert(node: yaml.Node, loader: _Replay, doc: YamlDocument, loc: Loc) -> Any:
    if isinstance(node, yaml.MappingNode):
        own = loader.own_keys.setdefault(
            id(node), {id(key) for key, _ in node.value if key.tag != _MERGE_TAG}
        )
        loader.flatten_mapping(node)  # resolves << merge keys: merged pairs come first
        result: dict[Any, Any] = {}
        written: set[Any] = set()  # keys written in this mapping itself, not merged in
        for key_node, value_node in node.value:
            key = _scalar(key_node, loader, doc, loc)
            if key is _FAILED:
                continue
            if not isinstance(key, Hashable):
                doc.problems.append(doc.problem(loc, "a mapping key must be a plain value"))
                continue
            key_loc = (*loc, _key_part(key))
            doc.lines[key_loc] = key_node.start_mark.line + 1
            if id(key_node) in own:
                if key in written:
                    doc.problems.append(doc.problem(key_loc, "duplicate key"))
                written.add(key)
            result[key] = _convert(value_node, loader, doc, key_loc)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            doc.lines[(*loc, index)] = item.start_mark.line + 1
            items.append(_convert(item, loader, doc, (*loc, index)))
        return items
    return _scalar(node, loader, doc, loc)
