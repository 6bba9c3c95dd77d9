"""Anthropic Messages <-> OpenAI chat, both ways, streaming included.

Used when the chosen deployment does not speak Messages natively (OpenAI-compatible
endpoints, the local llama.cpp model); a deployment that does gets the Messages body
unchanged (:class:`~tiergate.request.NativeBody`). What has no chat equivalent is dropped
on this path only: ``thinking`` / ``redacted_thinking`` blocks of earlier turns,
``cache_control`` marks, ``metadata`` other than ``user_id``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from tiergate.errors import InvalidRequest
from tiergate.tokens import prompt_tokens

#: Headers a native Anthropic deployment receives from the client unchanged.
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
#: The body fields the gateway itself consumes (the adapter sets ``model`` and ``stream``).
NOT_NATIVE = ("model", "stream")

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
         "content_filter": "refusal"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 405: "invalid_request_error", 409: "invalid_request_error",
                413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}
_DROPPED_BLOCKS = ("thinking", "redacted_thinking")


def error_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error shape for a status (types as Anthropic's API documents them)."""
    return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}


def usage_tokens(usage: Mapping[str, Any] | None) -> tuple[int | None, int | None]:
    """``(prompt, completion)`` tokens of an Anthropic ``usage``; cache reads and writes
    are input tokens too (billed at the catalog's input price: an upper bound)."""
    if not usage:
        return None, None
    parts = [usage.get(k) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")]
    ints = [p for p in parts if isinstance(p, int)]
    out = usage.get("output_tokens")
    return (sum(ints) if ints else None), (out if isinstance(out, int) else None)


# --- request: Messages -> chat -------------------------------------------------------------


def _text(block: Mapping[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"{where}: a text block needs a string 'text'", param=where)
    return text


def _image(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    src = block.get("source")
    if isinstance(src, dict) and src.get("type") == "base64" and isinstance(src.get("data"), str):
        url = f"data:{src.get('media_type') or 'image/png'};base64,{src['data']}"
    elif isinstance(src, dict) and src.get("type") == "url" and isinstance(src.get("url"), str):
        url = src["url"]
    else:
        raise InvalidRequest(f"{where}: an image needs a base64 or url 'source'", param=where)
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result_text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for i, b in enumerate(content):
            if isinstance(b, dict) and b.get("type") == "text":
                parts.append(_text(b, f"{where}.content.{i}"))
            elif isinstance(b, dict) and b.get("type") == "image":
                raise InvalidRequest(f"{where}: images inside tool results need a deployment that speaks "
                                     "Anthropic Messages", param=where)
        return "\n".join(parts)
    raise InvalidRequest(f"{where}: 'content' must be a string or a list of blocks", param=where)


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    """One Anthropic user turn -> chat messages: tool results first (as ``tool`` messages,
    which must follow the assistant's tool calls), then the user's own content."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, b in enumerate(content):
        w = f"{where}.content.{i}"
        kind = b.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": _text(b, w)})
        elif kind == "image":
            parts.append(_image(b, w))
        elif kind == "tool_result":
            if not isinstance(b.get("tool_use_id"), str):
                raise InvalidRequest(f"{w}: a tool_result needs 'tool_use_id'", param=w)
            text = _tool_result_text(b.get("content"), w)
            if b.get("is_error"):
                text = f"[tool error] {text}"
            tools.append({"role": "tool", "tool_call_id": b["tool_use_id"], "content": text})
        elif kind == "document" and isinstance(b.get("source"), dict) and b["source"].get("type") == "text":
            parts.append({"type": "text", "text": str(b["source"].get("data", ""))})
        elif kind in _DROPPED_BLOCKS:
            continue
        else:
            raise InvalidRequest(f"{w}: content block type {kind!r} needs a deployment that speaks Anthropic "
                                 "Messages", param=w)
    out = list(tools)
    if parts:
        simple = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": "\n".join(p["text"] for p in parts) if simple else parts})
    return out


def _assistant(content: Any, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, b in enumerate(content):
        w = f"{where}.content.{i}"
        kind = b.get("type")
        if kind == "text":
            texts.append(_text(b, w))
        elif kind == "tool_use":
            if not isinstance(b.get("id"), str) or not isinstance(b.get("name"), str):
                raise InvalidRequest(f"{w}: a tool_use block needs 'id' and 'name'", param=w)
            calls.append({"id": b["id"], "type": "function",
                          "function": {"name": b["name"], "arguments": orjson.dumps(b.get("input") or {}).decode()}})
        elif kind in _DROPPED_BLOCKS:
            continue  # earlier turns' reasoning: meaningful to Anthropic models only
        else:
            raise InvalidRequest(f"{w}: assistant block type {kind!r} needs a deployment that speaks Anthropic "
                                 "Messages", param=w)
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def _system(system: Any) -> str | None:
    if system is None or isinstance(system, str):
        return system or None
    return "\n".join(_text(b, f"system.{i}") for i, b in enumerate(system) if b.get("type") == "text")


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, t in enumerate(tools):
        if t.get("type") not in (None, "custom"):
            raise InvalidRequest(f"tools.{i}: Anthropic server tool {t.get('type')!r} needs a deployment that "
                                 "speaks Anthropic Messages", param=f"tools.{i}")
        fn: dict[str, Any] = {"name": t["name"], "parameters": t.get("input_schema") or {"type": "object"}}
        if t.get("description"):
            fn["description"] = t["description"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Mapping[str, Any]) -> tuple[Any, bool | None]:
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", None
    return {"type": "function", "function": {"name": choice.get("name")}}, parallel


def to_chat(body: Mapping[str, Any]) -> dict[str, Any]:
    """A validated Messages body as an OpenAI chat body (``model`` kept as the client sent it)."""
    messages: list[dict[str, Any]] = []
    system = _system(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for i, m in enumerate(body["messages"]):
        where = f"messages.{i}"
        if m["role"] == "user":
            messages += _user(m["content"], where)
        else:
            messages.append(_assistant(m["content"], where))
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages, "max_tokens": body["max_tokens"]}
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"),
                     ("stop_sequences", "stop")):
        if body.get(src) is not None:
            chat[dst] = body[src]
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice"):
        choice, parallel = _tool_choice(body["tool_choice"])
        chat["tool_choice"] = choice
        if parallel is not None and body.get("tools"):
            chat["parallel_tool_calls"] = parallel
    user = (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str):
        chat["user"] = user
    if body.get("stream"):
        # The final message_delta carries usage: ask every upstream for it.
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def native_body(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in NOT_NATIVE}


# --- response: chat -> Messages ------------------------------------------------------------


def message_id(chat_id: Any) -> str:
    return f"msg_{chat_id}" if isinstance(chat_id, str) and chat_id else f"msg_{uuid.uuid4().hex[:24]}"


def _tool_input(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {"arguments": arguments}  # never drop what the model produced
    return value if isinstance(value, dict) else {"value": value}


def from_chat(resp: Mapping[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` as an Anthropic ``message``."""
    choice = (resp.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if msg.get("content"):
        content.append({"type": "text", "text": msg["content"]})
    for tc in msg.get("tool_calls") or ():
        fn = tc.get("function") or {}
        content.append({"type": "tool_use", "id": tc.get("id") or f"toolu_{uuid.uuid4().hex[:20]}",
                        "name": fn.get("name", ""), "input": _tool_input(fn.get("arguments"))})
    usage = resp.get("usage") or {}
    return {"id": message_id(resp.get("id")), "type": "message", "role": "assistant", "model": resp.get("model"),
            "content": content, "stop_reason": _STOP.get(choice.get("finish_reason") or "stop", "end_turn"),
            "stop_sequence": None,
            "usage": {"input_tokens": usage.get("prompt_tokens", 0), "output_tokens": usage.get("completion_tokens", 0)}}


class MessageStream:
    """``chat.completion.chunk`` dicts in, Anthropic stream events out (``(name, data)``).

    Text deltas become ``text_delta``s, tool-call argument fragments ``input_json_delta``s
    as they arrive (never buffered, never dropped); each content kind gets its own block
    with ``content_block_start`` / ``content_block_stop``. :meth:`finish` closes the message
    with ``message_delta`` (stop reason, usage) and ``message_stop``."""

    __slots__ = ("_fallback_model", "_input", "_next", "_open", "_started", "_stop", "_usage")

    def __init__(self, *, input_tokens: int, model: str) -> None:
        self._input = input_tokens
        self._fallback_model = model
        self._started = False
        self._next = 0
        self._open: tuple[str, int] | None = None  # ("text", -1) or ("tool", chat index)
        self._stop = "end_turn"
        self._usage: dict[str, Any] | None = None

    def _start(self, chunk: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        self._started = True
        message = {"id": message_id(chunk.get("id")), "type": "message", "role": "assistant",
                   "model": chunk.get("model") or self._fallback_model, "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": {"input_tokens": self._input, "output_tokens": 0}}
        return [("message_start", {"type": "message_start", "message": message}), ("ping", {"type": "ping"})]

    def _close(self, out: list[tuple[str, dict[str, Any]]]) -> None:
        if self._open is not None:
            out.append(("content_block_stop", {"type": "content_block_stop", "index": self._next - 1}))
            self._open = None

    def _block(self, out: list[tuple[str, dict[str, Any]]], key: tuple[str, int], block: dict[str, Any]) -> None:
        self._close(out)
        out.append(("content_block_start", {"type": "content_block_start", "index": self._next,
                                            "content_block": block}))
        self._open = key
        self._next += 1

    def events(self, chunk: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        out = self._start(chunk) if not self._started else []
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for ch in chunk.get("choices") or ():
            delta = ch.get("delta") or {}
            text = delta.get("content")
            if text:
                if self._open != ("text", -1):
                    self._block(out, ("text", -1), {"type": "text", "text": ""})
                out.append(("content_block_delta", {"type": "content_block_delta", "index": self._next - 1,
                                                    "delta": {"type": "text_delta", "text": text}}))
            for tc in delta.get("tool_calls") or ():
                key = ("tool", int(tc.get("index") or 0))
                fn = tc.get("function") or {}
                if self._open != key:
                    self._block(out, key, {"type": "tool_use", "id": tc.get("id") or f"toolu_{uuid.uuid4().hex[:20]}",
                                           "name": fn.get("name") or "", "input": {}})
                if fn.get("arguments"):
                    out.append(("content_block_delta", {"type": "content_block_delta", "index": self._next - 1,
                                                        "delta": {"type": "input_json_delta",
                                                                  "partial_json": fn["arguments"]}}))
            if ch.get("finish_reason"):
                self._stop = _STOP.get(ch["finish_reason"], "end_turn")
                self._close(out)
        return out

    def finish(self) -> list[tuple[str, dict[str, Any]]]:
        out = self._start({}) if not self._started else []
        self._close(out)
        u = self._usage or {}
        usage = {"input_tokens": u.get("prompt_tokens", self._input), "output_tokens": u.get("completion_tokens", 0)}
        out.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": self._stop,
                                                                          "stop_sequence": None}, "usage": usage}))
        out.append(("message_stop", {"type": "message_stop"}))
        return out


def error_event(status: int, message: str) -> tuple[str, dict[str, Any]]:
    return "error", error_body(status, message)


def count_tokens_estimate(chat: Mapping[str, Any]) -> dict[str, int]:
    """``/v1/messages/count_tokens`` for deployments that cannot count natively: the
    gateway's own estimate of the translated prompt (the one admission reserves for)."""
    return {"input_tokens": prompt_tokens(chat.get("messages") or [], chat.get("tools"))}

