"""OpenAI Responses <-> OpenAI chat, both ways, streaming included.

A Responses request (``input`` items, ``instructions``, function ``tools``,
``text.format``, ``max_output_tokens``) becomes a chat body; a chat answer becomes a
``response`` object with ``message`` / ``function_call`` output items. Conversation state
(``previous_response_id``) is the door's: it passes the earlier turns in as ``history``
(chat messages) and stores :func:`history_after` for the next turn.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from tiergate.errors import InvalidRequest

#: Tool types only OpenAI hosts (they run inside OpenAI's Responses API).
FUNCTION_TOOL = "function"


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def hosted_tools(body: Mapping[str, Any]) -> list[str]:
    """The built-in (OpenAI-hosted) tool types a request asks for: web search, file search,
    code interpreter, computer use, image generation, MCP, ..."""
    return [str(t.get("type")) for t in body.get("tools") or () if t.get("type") != FUNCTION_TOOL]


# --- request: Responses -> chat ------------------------------------------------------------


def _parts(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for i, p in enumerate(content):
        w = f"{where}.content.{i}"
        kind = p.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(p.get("text", ""))})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(p.get("refusal", ""))})
        elif kind == "input_image" and isinstance(p.get("image_url"), str):
            image: dict[str, Any] = {"url": p["image_url"]}
            if p.get("detail"):
                image["detail"] = p["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise InvalidRequest(f"{w}: content type {kind!r} is not supported (files need OpenAI's own "
                                 "Responses API)", param=w)
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(str(p.get("text", "")) for p in output if isinstance(p, dict))
    return str(output)


def input_messages(items: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``input`` as chat messages: messages, ``function_call`` (an assistant turn's tool
    calls, consecutive ones merged) and ``function_call_output`` (tool messages)."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    out: list[dict[str, Any]] = []
    for i, it in enumerate(items):
        where = f"input.{i}"
        kind = it.get("type") or ("message" if "role" in it else None)
        if kind == "message":
            role = it.get("role")
            content = _parts(it.get("content") or "", where)
            out.append({"role": "system" if role in ("system", "developer") else role, "content": content})
        elif kind == "function_call":
            call = {"id": it.get("call_id"), "type": "function",
                    "function": {"name": it.get("name"), "arguments": it.get("arguments") or "{}"}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and last.get("tool_calls"):
                last["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append({"role": "tool", "tool_call_id": it.get("call_id"), "content": _output_text(it.get("output"))})
        elif kind == "reasoning":
            continue  # reasoning items of earlier turns mean something to OpenAI's models only
        else:
            raise InvalidRequest(f"{where}: input item type {kind!r} is not supported here", param=where)
    return out


def input_items(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages (a stored conversation) as Responses ``input`` items: the inverse of
    :func:`input_messages`, for a native deployment that must be sent the conversation itself."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if role == "tool":
            out.append({"type": "function_call_output", "call_id": m.get("tool_call_id"),
                        "output": content if isinstance(content, str) else _output_text(content)})
            continue
        if content:
            if isinstance(content, list):
                text_type = "output_text" if role == "assistant" else "input_text"
                content = [{"type": text_type, "text": p.get("text", "")} if p.get("type") == "text" else
                           {"type": "input_image", "image_url": (p.get("image_url") or {}).get("url"),
                            **({"detail": p["image_url"]["detail"]} if (p.get("image_url") or {}).get("detail")
                               else {})}
                           for p in content]
            out.append({"type": "message", "role": role, "content": content})
        for call in m.get("tool_calls") or ():
            fn = call.get("function") or {}
            out.append({"type": "function_call", "call_id": call.get("id"), "name": fn.get("name"),
                        "arguments": fn.get("arguments") or "{}"})
    return out


def _response_format(fmt: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = fmt.get("type")
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    if kind == "json_object":
        return {"type": "json_object"}
    return None


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def to_chat(body: Mapping[str, Any], history: Sequence[Mapping[str, Any]] = ()) -> tuple[dict[str, Any], list]:
    """``(chat body, this turn's input as chat messages)``; ``history`` is the conversation
    before it (from ``previous_response_id``). ``instructions`` lead, and are not carried
    over to later turns (as OpenAI does)."""
    turn = input_messages(body["input"])
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    messages += [dict(m) for m in history] + turn
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    for k in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if body.get(k) is not None:
            chat[k] = body[k]
    tools = [t for t in body.get("tools") or () if t.get("type") == FUNCTION_TOOL]
    if tools:
        chat["tools"] = []
        for t in tools:
            fn = {"name": t["name"], "parameters": t.get("parameters") or {"type": "object"}}
            for k in ("description", "strict"):
                if t.get(k) is not None:
                    fn[k] = t[k]
            chat["tools"].append({"type": "function", "function": fn})
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = _tool_choice(body["tool_choice"])
    fmt = (body.get("text") or {}).get("format")
    if isinstance(fmt, dict) and (rf := _response_format(fmt)) is not None:
        chat["response_format"] = rf
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat, turn


# --- response: chat -> Responses -----------------------------------------------------------


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def usage_of(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    p, c = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {"input_tokens": p, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": c,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": p + c}


def envelope(response_id: str, body: Mapping[str, Any], *, model: str, created_at: int, output: list[dict[str, Any]],
             status: str, usage: Mapping[str, Any] | None, finish_reason: str | None = None) -> dict[str, Any]:
    """The ``response`` object around ``output`` (the request's settings echoed, as OpenAI does)."""
    fmt = (body.get("text") or {}).get("format") or {"type": "text"}
    incomplete = {"reason": "max_output_tokens"} if finish_reason == "length" else None
    return {
        "id": response_id, "object": "response", "created_at": created_at,
        "status": "incomplete" if incomplete and status == "completed" else status,
        "error": None, "incomplete_details": incomplete, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "model": model, "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None}, "store": bool(body.get("store", True)),
        "temperature": body.get("temperature", 1.0), "text": {"format": fmt},
        "tool_choice": body.get("tool_choice", "auto"), "tools": list(body.get("tools") or ()),
        "top_p": body.get("top_p", 1.0), "truncation": body.get("truncation") or "disabled",
        "usage": usage_of(usage), "user": body.get("user"), "metadata": body.get("metadata") or {},
    }


def from_chat(resp: Mapping[str, Any], body: Mapping[str, Any], response_id: str) -> dict[str, Any]:
    """A ``chat.completion`` as a ``response`` object."""
    choice = (resp.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    if msg.get("content"):
        output.append(message_item(new_id("msg"), msg["content"]))
    for tc in msg.get("tool_calls") or ():
        fn = tc.get("function") or {}
        output.append(call_item(new_id("fc"), tc.get("id") or new_id("call"), fn.get("name", ""),
                                fn.get("arguments") or ""))
    return envelope(response_id, body, model=resp.get("model") or "", created_at=int(resp.get("created") or time.time()),
                    output=output, status="completed", usage=resp.get("usage"),
                    finish_reason=choice.get("finish_reason"))


def history_after(turn_messages: Sequence[Mapping[str, Any]], response: Mapping[str, Any],
                  history: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """The conversation a follow-up with ``previous_response_id`` continues: the earlier
    turns, this turn's input and the response's output, as chat messages."""
    out = [dict(m) for m in history] + [dict(m) for m in turn_messages]
    assistant: dict[str, Any] | None = None
    for item in response.get("output") or ():
        if item.get("type") == "message":
            text = "".join(p.get("text", "") for p in item.get("content") or () if p.get("type") == "output_text")
            assistant = {"role": "assistant", "content": text}
            out.append(assistant)
        elif item.get("type") == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            if assistant is None:
                assistant = {"role": "assistant", "content": None}
                out.append(assistant)
            assistant.setdefault("tool_calls", []).append(call)
    return out


class ResponseStream:
    """``chat.completion.chunk`` dicts in, Responses stream events out (``(name, data)``),
    each with its ``sequence_number``: ``response.created``, ``response.in_progress``, per
    output item ``response.output_item.added`` ... ``response.output_item.done`` with
    ``response.output_text.delta`` / ``response.function_call_arguments.delta`` in between
    (forwarded as they arrive), and ``response.completed`` (usage included) from :meth:`finish`."""

    def __init__(self, response_id: str, body: Mapping[str, Any], *, model: str) -> None:
        self.id = response_id
        self._body = body
        self._model = model
        self._created = int(time.time())
        self._seq = 0
        self._items: list[dict[str, Any]] = []
        self._open: tuple[str, int] | None = None
        self._text: list[str] = []
        self._args: list[str] = []
        self._usage: Mapping[str, Any] | None = None
        self._finish: str | None = None
        self.response: dict[str, Any] | None = None

    def _ev(self, out: list[tuple[str, dict[str, Any]]], event: str, **data: Any) -> None:
        out.append((event, {"type": event, "sequence_number": self._seq, **data}))
        self._seq += 1

    def start(self) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        snap = envelope(self.id, self._body, model=self._model, created_at=self._created, output=[],
                        status="in_progress", usage=None)
        self._ev(out, "response.created", response=snap)
        self._ev(out, "response.in_progress", response=snap)
        return out

    def _close(self, out: list[tuple[str, dict[str, Any]]]) -> None:
        if self._open is None:
            return
        idx = len(self._items) - 1
        item = self._items[idx]
        if item["type"] == "message":
            text = "".join(self._text)
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            self._ev(out, "response.output_text.done", item_id=item["id"], output_index=idx, content_index=0,
                     text=text, logprobs=[])
            self._ev(out, "response.content_part.done", item_id=item["id"], output_index=idx, content_index=0,
                     part=part)
            item.update(message_item(item["id"], text))
        else:
            args = "".join(self._args)
            self._ev(out, "response.function_call_arguments.done", item_id=item["id"], output_index=idx,
                     name=item["name"], arguments=args)
            item.update(status="completed", arguments=args)
        self._ev(out, "response.output_item.done", output_index=idx, item=dict(item))
        self._open = None

    def events(self, chunk: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        if chunk.get("model"):
            self._model = chunk["model"]
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for ch in chunk.get("choices") or ():
            delta = ch.get("delta") or {}
            text = delta.get("content")
            if text:
                if self._open != ("text", -1):
                    self._close(out)
                    item = message_item(new_id("msg"), "", status="in_progress")
                    item["content"] = []
                    self._items.append(item)
                    self._open, self._text = ("text", -1), []
                    idx = len(self._items) - 1
                    self._ev(out, "response.output_item.added", output_index=idx, item=dict(item))
                    self._ev(out, "response.content_part.added", item_id=item["id"], output_index=idx,
                             content_index=0, part={"type": "output_text", "text": "", "annotations": [],
                                                    "logprobs": []})
                self._text.append(text)
                self._ev(out, "response.output_text.delta", item_id=self._items[-1]["id"],
                         output_index=len(self._items) - 1, content_index=0, delta=text, logprobs=[])
            for tc in delta.get("tool_calls") or ():
                key = ("tool", int(tc.get("index") or 0))
                fn = tc.get("function") or {}
                if self._open != key:
                    self._close(out)
                    item = call_item(new_id("fc"), tc.get("id") or new_id("call"), fn.get("name") or "", "",
                                     status="in_progress")
                    self._items.append(item)
                    self._open, self._args = key, []
                    self._ev(out, "response.output_item.added", output_index=len(self._items) - 1, item=dict(item))
                if fn.get("arguments"):
                    self._args.append(fn["arguments"])
                    self._ev(out, "response.function_call_arguments.delta", item_id=self._items[-1]["id"],
                             output_index=len(self._items) - 1, delta=fn["arguments"])
            if ch.get("finish_reason"):
                self._finish = ch["finish_reason"]
                self._close(out)
        return out

    def finish(self) -> list[tuple[str, dict[str, Any]]]:
        """Close the last item and build :attr:`response` (what ``response.completed``
        carries); the door stores it before sending the events."""
        out: list[tuple[str, dict[str, Any]]] = []
        self._close(out)
        self.response = envelope(self.id, self._body, model=self._model, created_at=self._created,
                                 output=self._items, status="completed", usage=self._usage or {},
                                 finish_reason=self._finish)
        name = "response.incomplete" if self.response["status"] == "incomplete" else "response.completed"
        self._ev(out, name, response=self.response)
        return out

    def error(self, code: str, message: str) -> tuple[str, dict[str, Any]]:
        out: list[tuple[str, dict[str, Any]]] = []
        self._ev(out, "error", code=code, message=message, param=None)
        return out[0]
