"""Reading and validating request bodies without leaking framework internals.

Bodies are read once, size-limited (413), parsed with orjson (400 on malformed JSON),
depth-limited (400: nothing below -- the stores, orjson's own writer at 255 levels,
DynamoDB's 32 -- ever meets a deeper value) and validated by pydantic models whose errors
become one readable 400 message.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from tiergate.errors import InvalidRequest, PayloadTooLarge
from tiergate.limits.json_limits import depth_of

M = TypeVar("M", bound=BaseModel)

#: Deepest nesting a request body may have (objects and arrays, the body itself is 1).
MAX_DEPTH = 64


def check_depth(raw: bytes, data: Any, max_depth: int = MAX_DEPTH) -> None:
    """400 when the body nests deeper than ``max_depth``. A body with fewer brackets than
    that cannot, so the walk runs only for bodies with many (C-speed count first)."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return
    if depth_of(data) > max_depth:
        raise InvalidRequest(f"Request body nests deeper than {max_depth} levels of objects and arrays",
                             code="nesting_too_deep")


async def read_json(request: Request, max_bytes: int, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"Request body of {declared} bytes exceeds the limit of {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"Request body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise InvalidRequest("Request body is empty; expected a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        # (orjson stops at 1024 levels itself; the error then names the depth)
        raise InvalidRequest(f"Request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("Request body must be a JSON object")
    check_depth(raw, data, max_depth)
    return data


def validation_message(e: ValidationError) -> tuple[str, str | None]:
    """One line per problem, as 'field.path: message', and the first field as ``param``."""
    parts = []
    first: str | None = None
    for err in e.errors(include_url=False, include_context=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"] if p != "body")
        first = first or loc or None
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "Invalid request: " + "; ".join(parts[:8]), first


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        msg, param = validation_message(e)
        raise InvalidRequest(msg, param=param) from None
