"""What the gateway reads from a native deployment's answer (usage for settlement, text
for an estimate when usage is missing), per dialect: Anthropic Messages ("anthropic") and
OpenAI Responses ("responses")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tiergate.dialects.anthropic import usage_tokens as _anthropic_usage

#: The event that ends a native stream; the gateway holds it back until it has settled.
FINAL_EVENTS = {"anthropic": frozenset({"message_stop"}),
                "responses": frozenset({"response.completed", "response.incomplete", "response.failed"})}


def usage_tokens(dialect: str, usage: Mapping[str, Any] | None) -> tuple[int | None, int | None]:
    """``(prompt, completion)`` tokens of a native answer's ``usage``."""
    if dialect == "anthropic":
        return _anthropic_usage(usage)
    u = usage or {}
    p, c = u.get("input_tokens"), u.get("output_tokens")
    return (p if isinstance(p, int) else None), (c if isinstance(c, int) else None)


def answer_text(dialect: str, response: Mapping[str, Any]) -> str:
    """The text of a native answer (to estimate output tokens when usage is missing)."""
    if dialect == "anthropic":
        return "".join(str(b.get("text", "")) for b in response.get("content") or ())
    return "".join(str(p.get("text", "")) for it in response.get("output") or () if it.get("type") == "message"
                   for p in it.get("content") or ())


def event_usage(dialect: str, event: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """Usage a stream event reports (Anthropic: ``message_start`` and ``message_delta``;
    Responses: the final ``response``)."""
    kind = event.get("type")
    if dialect == "anthropic":
        if kind == "message_start":
            return _anthropic_usage((event.get("message") or {}).get("usage"))
        if kind == "message_delta":
            return _anthropic_usage(event.get("usage"))
        return None, None
    if kind in FINAL_EVENTS["responses"]:
        return usage_tokens(dialect, (event.get("response") or {}).get("usage"))
    return None, None


def event_text(dialect: str, event: Mapping[str, Any]) -> str:
    kind = event.get("type")
    if dialect == "anthropic" and kind == "content_block_delta":
        d = event.get("delta") or {}
        return str(d.get("text") or d.get("partial_json") or d.get("thinking") or "")
    if dialect == "responses" and kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
        return str(event.get("delta") or "")
    return ""
