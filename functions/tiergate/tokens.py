"""Cheap token estimates for admission and context checks.

Exact tokenizers differ per provider and cost milliseconds; admission needs an upper-ish
estimate in microseconds. ~4 characters per token for Latin text, ~1 per CJK character,
plus per-message overhead, as OpenAI documents. Settlement uses the provider's usage.
"""

from __future__ import annotations

from typing import Any

_PER_MESSAGE = 4
_PER_IMAGE = 765  # a high-detail 512x512 tile set, OpenAI's documented figure


def text_tokens(text: str) -> int:
    """~4 characters a token for ASCII; about a token per CJK character.

    Runs on every request over the whole prompt, so it stays in C: a CJK character is 3
    bytes in UTF-8 (2 more than its 1 character), so the UTF-8 excess estimates how many
    wide characters there are without a Python-level loop."""
    if not text:
        return 0
    n = len(text)
    if text.isascii():
        return (n + 3) // 4
    wide = min(n, (len(text.encode("utf-8", "surrogatepass")) - n) // 2)
    return wide + (n - wide + 3) // 4


def content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return text_tokens(content)
    total = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text":
                total += text_tokens(str(part.get("text", "")))
            elif part.get("type") in ("image_url", "input_image"):
                total += _PER_IMAGE
    return total


def prompt_tokens(messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int:
    total = 3
    for m in messages:
        total += _PER_MESSAGE + content_tokens(m.get("content"))
        for call in m.get("tool_calls") or ():
            fn = call.get("function") or {}
            total += text_tokens(str(fn.get("name", ""))) + text_tokens(str(fn.get("arguments", "")))
    if tools:
        import orjson

        total += text_tokens(orjson.dumps(tools).decode())
    return total
