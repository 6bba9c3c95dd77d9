"""What a request needs from a deployment: prompt size, answer size, capabilities."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tiergate.tokens import prompt_tokens

#: Output tokens assumed for context checks when the request sets no max_tokens.
DEFAULT_OUTPUT_RESERVE = 256


@dataclass(frozen=True, slots=True)
class RequestNeeds:
    prompt_tokens: int
    max_output_tokens: int | None
    capabilities: frozenset[str]

    def output_reserve(self) -> int:
        # 0 is a real bound (embeddings produce no output tokens); None means unbounded.
        return DEFAULT_OUTPUT_RESERVE if self.max_output_tokens is None else self.max_output_tokens


def needs_of(body: Mapping[str, Any]) -> RequestNeeds:
    """Read the needs of an OpenAI chat body (tools, JSON, images, sizes)."""
    messages = body.get("messages") or []
    caps: set[str] = set()
    if body.get("tools") or body.get("functions"):
        caps.add("tools")
    rf = body.get("response_format")
    if isinstance(rf, dict):
        if rf.get("type") == "json_schema":
            caps.add("json_schema")
        elif rf.get("type") == "json_object":
            caps.add("json")
    for m in messages:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, list) and any(isinstance(p, dict) and p.get("type") in ("image_url", "input_image") for p in c):
            caps.add("vision")
            break
    max_out = body.get("max_completion_tokens") or body.get("max_tokens")
    return RequestNeeds(
        prompt_tokens=prompt_tokens(messages, body.get("tools")),
        max_output_tokens=int(max_out) if isinstance(max_out, int) else None,
        capabilities=frozenset(caps),
    )
