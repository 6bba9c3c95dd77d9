"""OpenAI embeddings bodies: the input as a list, its token estimate, and the answer in
the encoding the client asked for (adapters always return float vectors; ``base64`` is
little-endian float32, as OpenAI sends it)."""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from tiergate.tokens import text_tokens


def inputs(body: Mapping[str, Any]) -> list[Any]:
    """``input`` as a list: strings, or token arrays (lists of ints)."""
    value = body["input"]
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(x, int) for x in value):
        return [value]  # one token array
    return list(value)


def texts(body: Mapping[str, Any]) -> list[str] | None:
    """The inputs as strings, or None when they are token arrays."""
    items = inputs(body)
    return items if all(isinstance(x, str) for x in items) else None


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """The admission estimate: text tokens (or the token arrays' lengths)."""
    return sum(text_tokens(x) if isinstance(x, str) else len(x) for x in inputs(body)) or 1


def encode(vector: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def render(resp: Mapping[str, Any], encoding_format: str | None) -> dict[str, Any]:
    """The upstream's (float) answer in the client's ``encoding_format``."""
    data = resp.get("data") or []
    if encoding_format == "base64":
        data = [{**d, "embedding": encode(d["embedding"]) if isinstance(d.get("embedding"), list)
                 else d.get("embedding")} for d in data]
    usage = resp.get("usage") or {}
    p = int(usage.get("prompt_tokens") or 0)
    return {"object": "list", "data": data, "model": resp.get("model"),
            "usage": {"prompt_tokens": p, "total_tokens": int(usage.get("total_tokens") or p),
                      **({"cost_usd": usage["cost_usd"]} if "cost_usd" in usage else {})}}


def response(vectors: Sequence[Sequence[float]], *, model: str, prompt_tokens: int) -> dict[str, Any]:
    """An embeddings answer from float vectors (for adapters that compute them locally)."""
    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": list(v)} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
