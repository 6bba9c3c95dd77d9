"""Bounds on JSON values that come from clients and are stored (key metadata, ingested
usage records): nesting depth, measured without recursion."""

from __future__ import annotations

from typing import Any


def depth_of(value: Any) -> int:
    """Nesting depth of objects and arrays (a scalar is 0, ``{}`` is 1)."""
    depth = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            depth = max(depth, d)
            stack.extend((x, d + 1) for x in v.values() if isinstance(x, dict | list))
        elif isinstance(v, list):
            depth = max(depth, d)
            stack.extend((x, d + 1) for x in v if isinstance(x, dict | list))
    return depth
