"""Legacy OpenAI completions (``/v1/completions``) <-> chat.

A prompt becomes one user message; the answer's text comes back as ``choices[0].text``
(``echo`` prepends the prompt). One prompt per request (n=1, as the chat door)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_SAMPLING = ("max_tokens", "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty",
             "logit_bias", "user")
#: OpenAI's documented default for the legacy endpoint.
DEFAULT_MAX_TOKENS = 16


def prompt_of(body: Mapping[str, Any]) -> str:
    prompt = body["prompt"]
    return prompt[0] if isinstance(prompt, list) else prompt


def to_chat(body: Mapping[str, Any]) -> dict[str, Any]:
    chat: dict[str, Any] = {"model": body.get("model"), "messages": [{"role": "user", "content": prompt_of(body)}]}
    for k in _SAMPLING:
        if body.get(k) is not None:
            chat[k] = body[k]
    chat.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
    if body.get("stream"):
        chat["stream"] = True
        if body.get("stream_options"):
            chat["stream_options"] = body["stream_options"]
    return chat


def completion_id(chat_id: Any) -> str:
    return f"cmpl-{chat_id}" if isinstance(chat_id, str) and chat_id else "cmpl-tg"


def from_chat(resp: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    choice = (resp.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content") or ""
    if body.get("echo"):
        text = prompt_of(body) + text
    out = {"id": completion_id(resp.get("id")), "object": "text_completion", "created": resp.get("created"),
           "model": resp.get("model"),
           "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": choice.get("finish_reason")}]}
    if resp.get("usage") is not None:
        out["usage"] = resp["usage"]
    return out


def chunk_from_chat(chunk: Mapping[str, Any]) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as a ``text_completion`` stream chunk."""
    out: dict[str, Any] = {"id": completion_id(chunk.get("id")), "object": "text_completion",
                           "created": chunk.get("created"), "model": chunk.get("model"),
                           "choices": [{"text": (ch.get("delta") or {}).get("content") or "", "index": 0,
                                        "logprobs": None, "finish_reason": ch.get("finish_reason")}
                                       for ch in chunk.get("choices") or ()]}
    if chunk.get("usage"):
        out["usage"] = chunk["usage"]
    return out
