"""Catalog errors a person can act on: ``FILE:LINE: path: what is wrong (did you mean ...?)``.

The YAML is composed once more (cheap, and only when something is wrong) to map a
pydantic error location (``models.2.adapter``) to the line it came from; an unknown
field gets the closest known field name of its section, an unknown value the closest
allowed one.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Iterable, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

Loc = Sequence[str | int]


def yaml_error(source: str, e: yaml.YAMLError) -> str:
    """A YAML syntax error named by file and line (PyYAML says ``"<unicode string>"``)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


def _node_at(root: yaml.Node | None, loc: Loc) -> yaml.Node | None:
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    # An unknown key's own line is more useful than its value's.
                    nxt = k if part == loc[-1] else v
                    break
            if nxt is None:
                return node
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def line_of(text: str, loc: Loc) -> int | None:
    """The 1-based line ``loc`` points at in ``text`` (the nearest enclosing node)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return None
    node = _node_at(root, loc)
    return node.start_mark.line + 1 if node is not None else None


def _models_in(tp: Any) -> Iterable[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp
        return
    for arg in typing.get_args(tp):
        yield from _models_in(arg)


def field_names(cls: type[BaseModel], depth: int = 3) -> set[str]:
    """Field names of ``cls`` and of the config models nested in it (a section's vocabulary)."""
    names: set[str] = set()
    for name, f in cls.model_fields.items():
        names.add(name)
        if f.alias:
            names.add(f.alias)
        if depth:
            for sub in _models_in(f.annotation):
                names |= field_names(sub, depth - 1)
    return names


def _section_class(root: type[BaseModel], loc: Loc) -> type[BaseModel]:
    """The config model that owns the last key of ``loc`` (walking field annotations)."""
    cls = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        f = cls.model_fields.get(str(part))
        if f is None:
            continue  # a dict key (alias name, policy name): stay in the dict's value type
        subs = list(_models_in(f.annotation))
        if subs:
            cls = subs[0]
    return cls


_EXPECTED = re.compile(r"'([^']+)'")


def suggestion(root: type[BaseModel], err: dict[str, Any]) -> str:
    loc = [p for p in err.get("loc", ()) if isinstance(p, str | int)]
    if err.get("type") == "extra_forbidden" and loc:
        cls = _section_class(root, loc)
        close = difflib.get_close_matches(str(loc[-1]), sorted(field_names(cls, depth=0)), n=1, cutoff=0.6)
        return f" (did you mean '{close[0]}'?)" if close else ""
    if err.get("type") == "literal_error" and isinstance(err.get("input"), str):
        allowed = _EXPECTED.findall(str((err.get("ctx") or {}).get("expected", "")))
        close = difflib.get_close_matches(err["input"], allowed, n=1, cutoff=0.5)
        return f" (did you mean '{close[0]}'?)" if close else ""
    return ""


def validation_lines(source: str, text: str, root: type[BaseModel], e: ValidationError) -> list[str]:
    """Every schema error, each with its file:line and a suggestion where one helps."""
    out = []
    for err in e.errors():
        loc = [p for p in err["loc"] if isinstance(p, str | int)]
        path = ".".join(str(p) for p in loc) or "(top level)"
        line = line_of(text, loc)
        where = f"{source}:{line}" if line else source
        out.append(f"{where}: {path}: {err['msg']}{suggestion(root, err)}")
    return out


def located(source: str, text: str, problems: Sequence[tuple[Loc, str]]) -> list[str]:
    """Cross-reference problems (stage two) as ``FILE:LINE: message`` lines."""
    out = []
    for loc, msg in problems:
        line = line_of(text, loc) if text else None
        out.append(f"{source}:{line}: {msg}" if line else f"{source}: {msg}")
    return out
