"""YAML to plain Python data, remembering the line of every key and list item.

Duplicate keys are errors (PyYAML silently keeps the last one, which hides typos).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import yaml

from edged.adapters.base import Loc


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
        """Format a problem as ``FILE:LINE: key.path: message``."""
        where = format_loc(loc) or "(top level)"
        return f"{self.path}:{self.line_of(loc)}: {where}: {message}"


def format_loc(loc: Loc) -> str:
    """``("devices", 2, "modbus", "unit")`` -> ``devices[2].modbus.unit``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def load_yaml(text: str, path: str) -> YamlDocument:
    """Parse ``text``; syntax errors and duplicate keys land in ``problems``."""
    doc = YamlDocument(path=path, data=None)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        doc.lines[()] = 1
        doc.data = None if node is None else _convert(node, loader, doc, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        doc.problems.append(f"{path}:{line}: (yaml): {exc.problem or exc.context}")
    except yaml.YAMLError as exc:
        doc.problems.append(f"{path}:1: (yaml): {exc}")
    finally:
        loader.dispose()
    return doc


def _convert(node: yaml.Node, loader: yaml.SafeLoader, doc: YamlDocument, loc: Loc) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves << merge keys
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                doc.problems.append(doc.problem(loc, "a mapping key must be a plain value"))
                continue
            key_loc = (*loc, key if isinstance(key, str | int) else str(key))
            doc.lines[key_loc] = key_node.start_mark.line + 1
            if key in result:
                doc.problems.append(doc.problem(key_loc, "duplicate key"))
            result[key] = _convert(value_node, loader, doc, key_loc)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            doc.lines[(*loc, index)] = item.start_mark.line + 1
            items.append(_convert(item, loader, doc, (*loc, index)))
        return items
    return loader.construct_object(node, deep=True)
