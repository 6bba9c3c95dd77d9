"""Is this a JSON Schema? -- the check OpenAI makes on tool ``parameters`` and
``response_format.json_schema.schema`` before it calls any model.

A structural check of the keywords that have a required shape (``type`` names a JSON type,
``properties`` maps names to schemas, ``required`` lists strings, ``pattern`` compiles,
...), iterative and bounded in depth, in microseconds: it runs on every request with
tools, so it is ours rather than a metaschema validator's (milliseconds a call, and
another heavy import on the cold path). Unknown keywords are allowed, as in JSON Schema.
Results are cached by the schema's bytes: agents send the same tools on every call.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import orjson

TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_ONE = ("additionalProperties", "items", "not", "contains", "propertyNames", "if", "then", "else",
               "unevaluatedProperties", "unevaluatedItems", "additionalItems")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "minContains",
           "maxContains")
_NUMBERS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_STRINGS = ("title", "description", "format", "$ref", "$id", "$schema", "$comment", "contentMediaType")
MAX_DEPTH = 32


class SchemaProblem(ValueError):
    pass


def check_schema(schema: Any, where: str = "schema") -> None:
    """Raise :class:`SchemaProblem` naming the first thing that makes ``schema`` invalid."""
    try:
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except TypeError as e:
        raise SchemaProblem(f"{where} is not JSON: {e}") from None
    problem = _problem(key)
    if problem is not None:
        raise SchemaProblem(f"{where}{problem}")


@lru_cache(maxsize=1024)
def _problem(key: bytes) -> str | None:
    return _walk(orjson.loads(key))


def _walk(root: Any) -> str | None:  # one table of keyword rules, walked without recursion
    stack: list[tuple[Any, str, int]] = [(root, "", 1)]
    while stack:
        s, path, depth = stack.pop()
        if isinstance(s, bool):
            continue  # true / false are schemas
        if not isinstance(s, dict):
            return f"{path}: a schema must be an object or a boolean, not {type(s).__name__}"
        if depth > MAX_DEPTH:
            return f"{path}: nests deeper than {MAX_DEPTH} schemas"
        t = s.get("type")
        if t is not None:
            ts = t if isinstance(t, list) else [t]
            if not ts or any(not isinstance(x, str) or x not in TYPES for x in ts) or len(set(map(str, ts))) != len(ts):
                return f"{path}.type: {t!r} is not a JSON type (or a list of distinct ones): use one of {sorted(TYPES)}"
        for k in _SCHEMA_MAPS:
            if k in s:
                m = s[k]
                if not isinstance(m, dict):
                    return f"{path}.{k}: must be an object mapping names to schemas"
                stack.extend((v, f"{path}.{k}.{n}", depth + 1) for n, v in m.items())
        for k in _SCHEMA_ONE:
            if k in s:
                v = s[k]
                if k == "items" and isinstance(v, list):  # draft-07 tuple form
                    stack.extend((x, f"{path}.items[{i}]", depth + 1) for i, x in enumerate(v))
                else:
                    stack.append((v, f"{path}.{k}", depth + 1))
        for k in _SCHEMA_LISTS:
            if k in s:
                v = s[k]
                if not isinstance(v, list) or not v:
                    return f"{path}.{k}: must be a non-empty array of schemas"
                stack.extend((x, f"{path}.{k}[{i}]", depth + 1) for i, x in enumerate(v))
        if "required" in s:
            r = s["required"]
            if not isinstance(r, list) or any(not isinstance(x, str) for x in r) or len(set(r)) != len(r):
                return f"{path}.required: must be an array of distinct property names"
        if "enum" in s and (not isinstance(s["enum"], list) or not s["enum"]):
            return f"{path}.enum: must be a non-empty array"
        for k in _COUNTS:
            if k in s and (not isinstance(s[k], int) or isinstance(s[k], bool) or s[k] < 0):
                return f"{path}.{k}: must be a non-negative integer"
        for k in _NUMBERS:
            if k in s and (not isinstance(s[k], int | float) or isinstance(s[k], bool)):
                return f"{path}.{k}: must be a number"
        if "multipleOf" in s and s["multipleOf"] <= 0:
            return f"{path}.multipleOf: must be greater than 0"
        for k in _STRINGS:
            if k in s and not isinstance(s[k], str):
                return f"{path}.{k}: must be a string"
        if "pattern" in s:
            if not isinstance(s["pattern"], str):
                return f"{path}.pattern: must be a string"
            try:
                re.compile(s["pattern"])
            except re.error as e:
                return f"{path}.pattern: not a valid regular expression ({e})"
        for k in ("uniqueItems", "nullable", "readOnly", "writeOnly", "deprecated"):
            if k in s and not isinstance(s[k], bool):
                return f"{path}.{k}: must be a boolean"
    return None
