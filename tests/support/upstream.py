"""Loopback upstream simulator: a real HTTP server speaking OpenAI and Anthropic wire formats.

It runs as its own process (uvicorn + uvloop + httptools, raw ASGI) on 127.0.0.1, so a
hanging or disconnecting step never blocks the test process, and providers reach it over
real sockets exactly as they would reach the real service. The file imports only the
standard library, orjson and uvicorn: ``python tests/support/upstream.py --port 9000``
also serves benchmarks.

Endpoints
---------
``POST /v1/chat/completions`` (also ``/chat/completions``)
    OpenAI chat completions. JSON, or SSE when ``stream`` is true (``data: {chunk}``
    events, a final usage chunk with ``choices: []`` when
    ``stream_options.include_usage`` is set, then ``data: [DONE]``).
``POST /v1/messages``
    Anthropic messages (``x-api-key``). JSON, or the real SSE event sequence when
    ``stream`` is true: ``message_start``, ``content_block_start``, ``ping``,
    ``content_block_delta`` (``text_delta`` / ``input_json_delta``) ...,
    ``content_block_stop``, ``message_delta`` (stop_reason + usage), ``message_stop``.
``POST /v1/messages/count_tokens``
    Anthropic token counting: ``{"input_tokens": N}`` (the same estimate as usage).
``POST /v1/embeddings``
    OpenAI embeddings: one deterministic vector per input (from a hash of the text;
    ``dimensions`` long, default 8; ``encoding_format`` float or base64), usage
    ``prompt_tokens`` = the inputs' token estimates.
``POST /v1/responses``
    OpenAI Responses (as OpenAI's own API, hosted tools included): the text answer as one
    ``message`` output item, after one ``<type>_call`` item per hosted tool in ``tools``
    (``web_search_call`` ...); SSE with ``response.created`` ... ``response.completed``
    when ``stream`` is true.
``GET /v1/models``
    OpenAI model list (models seen so far plus ``sim``).

Control API (not part of any real provider)
-------------------------------------------
``POST /_sim/script``  ``{"model": "m", "steps": [STEP, ...]}``  append steps to the FIFO
    of model ``m`` (the model name *as received on the wire*, e.g. ``gpt-4o-mini`` for
    LiteLLM's ``openai/gpt-4o-mini``, ``claude-x`` for ``anthropic/claude-x``). Model
    ``"*"`` is a wildcard FIFO used when the model's own FIFO is empty.
``POST /_sim/default`` ``{"model": "m", "step": STEP}``  a step applied to every request
    for ``m`` (or ``"*"``) when no scripted step is queued; ``"step": null`` removes it.
``POST /_sim/reset``   clear scripts, defaults and the request log.
``GET  /_sim/requests`` (``?model=m``) the request log, oldest first: a list of
    ``{"seq", "t", "method", "path", "model", "stream", "client_port", "headers", "body",
    "step"}``; ``client_port`` is the client's TCP port (same port = reused connection);
    ``headers`` is every request header (lower-case names), ``body`` the parsed JSON,
    ``step`` the step applied (``null`` = default behaviour), ``t`` monotonic seconds.
``GET  /_sim/health``  ``{"ok": true}``.

Step precedence per request: the model's FIFO, the ``"*"`` FIFO, the model's default,
the ``"*"`` default, the built-in model names below, else the normal answer.

Built-in model names: ``always-<status>`` (e.g. ``always-500``, ``always-429``, which
sends ``Retry-After: 1``), ``always-hang``, ``always-drop``, ``slow-<ms>`` (answers
after ``<ms>`` milliseconds).

STEP schema (a JSON object; every field optional; fields combine)
-----------------------------------------------------------------
``count``            int, default 1: the step is used this many times before popping.
``delay_ms``         float: wait before sending the response headers.
``status``           int, default 200: a non-2xx status answers with an error body in
                     the endpoint's format (OpenAI ``{"error": {...}}`` / Anthropic
                     ``{"type": "error", "error": {...}}``).
``error_message``    str: the error body's message (default ``"simulated <status>"``).
``error_type``       str: the error body's type (default from the status).
``error_code``       str: OpenAI ``error.code`` (e.g. ``context_length_exceeded``).
``retry_after``      number or str: ``Retry-After`` header verbatim (seconds or HTTP-date).
``headers``          {str: str}: extra response headers.
``raw_body``         str: send this body verbatim instead of the generated one.
``hang``             bool: never answer (sleeps ``hang_s``, default 600, or until the
                     client disconnects) - use it to test timeouts.
``drop``             bool: close the connection without sending any response.
``content``          str: the assistant text (default: see below).
``finish_reason``    str: OpenAI finish reason (``stop``/``length``/``tool_calls``;
                     mapped to Anthropic ``end_turn``/``max_tokens``/``tool_use``).
``tool_calls``       [{"name": str, "arguments": dict | str, "id"?: str}]: answer with
                     these tool calls (OpenAI ``tool_calls`` / Anthropic ``tool_use``).
``usage``            {"prompt_tokens": int, "completion_tokens": int}: override usage.
``chunks``           int: number of content chunks when streaming (default: one per word).
``chunk_delay_ms``   float: delay between streamed chunks.
``disconnect_after`` int: streaming only: send this many content chunks (after the
                     headers and, for Anthropic, the opening events), then close the
                     connection abruptly. Non-streaming: same as ``drop``.
``stall_after``      int: streaming only: send this many content chunks, then stop sending
                     (connection left open, as ``hang``).

Default behaviour (no step)
---------------------------
* content = :func:`default_content` -> ``"echo: <last user text> [model=<model>]"``
  (whitespace collapsed; the last user message's text parts joined with spaces).
* ``response_format`` ``json_object`` -> content ``{"echo": <text>, "model": <model>}``;
  ``json_schema`` -> an object built from the schema (strings = the user text,
  integers 1, numbers 1.0, booleans true, arrays [], nested objects recursively).
* ``tools`` given, ``tool_choice`` not ``"none"`` and the last message is not a tool
  result -> one tool call of the forced function (or the first tool) with arguments built
  from its JSON schema as above (finish_reason ``tool_calls`` / stop_reason ``tool_use``).
  When the last message is a tool result (OpenAI ``role: tool`` / Anthropic
  ``tool_result`` block) the answer is text ``"tool said: <result text> [model=<model>]"``.
* usage: prompt_tokens = :func:`estimate_tokens` over the messages' text (chars/4,
  at least 1, plus 3 per message), completion_tokens = estimate over the content (or
  the JSON arguments of tool calls). Streaming and non-streaming agree.
* streamed content: one chunk per word (the word with its trailing space);
  ``chunks: N`` regroups into N chunks (padding with ``" tok"`` chunks if needed).
* Anthropic with ``thinking: {"type": "enabled"}``: the answer starts with a ``thinking``
  block (``"thinking": "sim thinks"``, ``"signature": "sim-sig"``; streamed as
  ``thinking_delta`` + ``signature_delta``).

Python side
-----------
:class:`UpstreamSim` (``.url``, ``.openai_base`` = url + "/v1", ``.anthropic_base`` = url,
``.script(model, steps)``, ``.set_default(model, step)``, ``.requests(model=None,
path=None)``, ``.reset()``, ``UpstreamSim.start()`` / ``.stop()``, context manager).
Fixtures live in :mod:`tests.support.upstream_fixtures`: ``upstream`` (session-scoped
running simulator) and ``sim`` (the same object, reset before each test).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import deque
from typing import Any

import orjson

# ----------------------------------------------------------------------------------------
# content generation (pure functions; tests may import them to compute expectations)
# ----------------------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """The simulator's token count for a piece of text: chars/4, at least 1."""
    return max(1, len(text) // 4)


def _text_of(content: Any) -> str:
    """Text of an OpenAI or Anthropic message content (str or list of parts/blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                if part.get("type") == "text":
                    out.append(str(part.get("text", "")))
                elif part.get("type") == "tool_result":
                    out.append(_text_of(part.get("content")))
        return " ".join(p for p in out if p)
    return str(content)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages or []):
        if isinstance(m, dict) and m.get("role") == "user":
            return " ".join(_text_of(m.get("content")).split())
    return ""


def default_content(model: str, text: str) -> str:
    """What the simulator answers for ``text`` (the last user message) by default."""
    return f"echo: {' '.join(text.split())} [model={model}]"


def prompt_tokens(messages: list[dict[str, Any]], system: Any = None) -> int:
    total = 0
    for m in messages or []:
        if isinstance(m, dict):
            total += estimate_tokens(_text_of(m.get("content"))) + 3
    if system:
        total += estimate_tokens(_text_of(system))
    return max(1, total)


def fill_schema(schema: Any, text: str, depth: int = 0) -> Any:
    """A value matching a (simple) JSON schema: strings = ``text``, numbers 1, etc."""
    if not isinstance(schema, dict) or depth > 8:
        return text
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return fill_schema(schema[key][0], text, depth + 1)
    t = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if t == "object":
        props = schema.get("properties") or {}
        return {k: fill_schema(v, text, depth + 1) for k, v in props.items()}
    if t == "array":
        return []
    if t == "integer":
        return 1
    if t == "number":
        return 1.0
    if t == "boolean":
        return True
    if t == "null":
        return None
    return text


def embedding_vector(text: str, dims: int) -> list[float]:
    """The simulator's embedding of ``text``: deterministic, unit length, ``dims`` long."""
    import hashlib

    raw = hashlib.sha256(text.encode()).digest() * (dims // 32 + 1)
    vec = [(b - 127.5) / 127.5 for b in raw[:dims]]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def split_chunks(content: str, n: int | None) -> list[str]:
    """Content pieces for streaming: one per word, or regrouped into ``n`` pieces."""
    words = re.findall(r"\S+\s*", content) or ([content] if content else [])
    if not n or n <= 0:
        return words or [""]
    if n >= len(words):
        return words + [" tok"] * (n - len(words))
    per = math.ceil(len(words) / n)
    groups = ["".join(words[i:i + per]) for i in range(0, len(words), per)]
    while len(groups) < n:  # ceil grouping can leave fewer groups: split the last ones
        groups.append("")
    return groups[:n]


# ----------------------------------------------------------------------------------------
# the answer a request gets (format-neutral), then rendered per wire format
# ----------------------------------------------------------------------------------------


class Answer:
    __slots__ = ("content", "tool_calls", "finish_reason", "prompt_tokens", "completion_tokens")

    def __init__(self, content: str | None, tool_calls: list[dict[str, Any]], finish_reason: str,
                 prompt_tokens: int, completion_tokens: int) -> None:
        self.content = content
        self.tool_calls = tool_calls
        self.finish_reason = finish_reason
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


_call_ids = itertools.count(1)


def _tool_call(name: str, arguments: Any, call_id: str | None = None) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id or f"call_sim{next(_call_ids)}", "name": name, "arguments": args}


def _openai_tools(req: dict[str, Any]) -> list[tuple[str, dict]]:
    out = []
    for t in req.get("tools") or []:
        fn = t.get("function") if isinstance(t, dict) else None
        if fn and fn.get("name"):
            out.append((fn["name"], fn.get("parameters") or {}))
    return out


def _anthropic_tools(req: dict[str, Any]) -> list[tuple[str, dict]]:
    return [(t["name"], t.get("input_schema") or {}) for t in req.get("tools") or []
            if isinstance(t, dict) and t.get("name")]


def _forced_tool(wire: str, choice: Any, tools: list[tuple[str, dict]]) -> str | None:
    """Name of the tool to call by default, or None for a text answer."""
    if not tools:
        return None
    if wire == "openai":
        if choice == "none":
            return None
        if isinstance(choice, dict):
            return (choice.get("function") or {}).get("name") or tools[0][0]
        return tools[0][0]
    if isinstance(choice, dict):
        if choice.get("type") == "none":
            return None
        if choice.get("type") == "tool":
            return choice.get("name") or tools[0][0]
    return tools[0][0]


def _last_is_tool_result(wire: str, messages: list[dict[str, Any]]) -> str | None:
    if not messages:
        return None
    last = messages[-1]
    if wire == "openai":
        return _text_of(last.get("content")) if last.get("role") == "tool" else None
    content = last.get("content")
    if last.get("role") == "user" and isinstance(content, list):
        results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results:
            return " ".join(_text_of(b.get("content")) for b in results)
    return None


def build_answer(wire: str, model: str, req: dict[str, Any], step: dict[str, Any]) -> Answer:
    messages = req.get("messages") or []
    text = last_user_text(messages)
    ptoks = prompt_tokens(messages, req.get("system"))
    tools = _openai_tools(req) if wire == "openai" else _anthropic_tools(req)
    tool_calls: list[dict[str, Any]] = []
    content: str | None
    if step.get("tool_calls"):
        tool_calls = [_tool_call(tc["name"], tc.get("arguments", {}), tc.get("id")) for tc in step["tool_calls"]]
        content = step.get("content")
    elif "content" in step:
        content = step["content"]
    else:
        tool_result = _last_is_tool_result(wire, messages)
        forced = None if tool_result is not None else _forced_tool(wire, req.get("tool_choice"), tools)
        if tool_result is not None:
            content = f"tool said: {' '.join(tool_result.split())} [model={model}]"
        elif forced is not None:
            schema = dict(tools).get(forced, {})
            tool_calls = [_tool_call(forced, fill_schema(schema, text))]
            content = None
        else:
            content = _json_content(req, model, text)
            if content is None:
                content = default_content(model, text)
    finish = step.get("finish_reason") or ("tool_calls" if tool_calls else "stop")
    produced = (content or "") + "".join(tc["arguments"] for tc in tool_calls)
    usage = step.get("usage") or {}
    return Answer(content, tool_calls, finish, int(usage.get("prompt_tokens", ptoks)),
                  int(usage.get("completion_tokens", estimate_tokens(produced))))


def _json_content(req: dict[str, Any], model: str, text: str) -> str | None:
    rf = req.get("response_format")
    if not isinstance(rf, dict):
        return None
    if rf.get("type") == "json_object":
        return json.dumps({"echo": text, "model": model})
    if rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema") or {}
        return json.dumps(fill_schema(schema, text))
    return None


# ----------------------------------------------------------------------------------------
# the server
# ----------------------------------------------------------------------------------------

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                500: "api_error", 502: "api_error", 503: "overloaded_error", 529: "overloaded_error"}
_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                   "content_filter": "refusal"}
_BUILTIN = re.compile(r"^(?:always-(?P<status>\d{3})|always-(?P<kind>hang|drop)|slow-(?P<ms>\d+))$")


def _builtin_step(model: str) -> dict[str, Any] | None:
    m = _BUILTIN.match(model)
    if not m:
        return None
    if m["status"]:
        status = int(m["status"])
        return {"status": status, **({"retry_after": 1} if status == 429 else {})}
    if m["kind"]:
        return {m["kind"]: True}
    return {"delay_ms": float(m["ms"])}


class _Drop(Exception):
    """Close the connection now (the client sees a broken response)."""


class SimApp:
    """The ASGI app. All state lives here; one instance per server process."""

    def __init__(self) -> None:
        self.scripts: dict[str, deque[dict[str, Any]]] = {}
        self.defaults: dict[str, dict[str, Any]] = {}
        self.log: list[dict[str, Any]] = []
        self.seq = itertools.count(1)
        self.ids = itertools.count(1)
        self.models_seen: dict[str, None] = {"sim": None}

    # -- plumbing ---------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        try:
            await self._route(scope, receive, send)
        except _Drop:
            _abort(send)

    async def _route(self, scope, receive, send) -> None:
        path, method = scope["path"], scope["method"]
        if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            await self._model_call("openai", scope, receive, send)
        elif method == "POST" and path in ("/v1/messages", "/messages"):
            await self._model_call("anthropic", scope, receive, send)
        elif method == "POST" and path in ("/v1/messages/count_tokens", "/messages/count_tokens"):
            req = orjson.loads(await _read_body(receive) or b"{}")
            self._log(scope, req, None)
            await _send_json(send, 200, {"input_tokens": prompt_tokens(req.get("messages") or [], req.get("system"))})
        elif method == "POST" and path in ("/v1/embeddings", "/embeddings"):
            await self._embeddings(scope, receive, send)
        elif method == "POST" and path in ("/v1/responses", "/responses"):
            await self._responses(scope, receive, send)
        elif method == "GET" and path in ("/v1/models", "/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "sim"} for m in self.models_seen]
            await _send_json(send, 200, {"object": "list", "data": data})
        elif path.startswith("/_sim/"):
            await self._control(method, path, scope, receive, send)
        else:
            await _send_json(send, 404, {"error": {"message": f"no route {method} {path}",
                                                   "type": "invalid_request_error", "code": "not_found"}})

    async def _control(self, method: str, path: str, scope, receive, send) -> None:
        if path == "/_sim/health":
            return await _send_json(send, 200, {"ok": True})
        if path == "/_sim/requests" and method == "GET":
            q = urllib.parse.parse_qs(scope.get("query_string", b"").decode())
            model = q.get("model", [None])[0]
            entries = [e for e in self.log if model is None or e["model"] == model]
            return await _send_json(send, 200, entries)
        if method != "POST":
            return await _send_json(send, 405, {"error": "method not allowed"})
        body = orjson.loads(await _read_body(receive) or b"{}")
        if path == "/_sim/reset":
            self.scripts.clear()
            self.defaults.clear()
            self.log.clear()
            return await _send_json(send, 200, {"ok": True})
        if path == "/_sim/script":
            q = self.scripts.setdefault(str(body["model"]), deque())
            for step in body.get("steps") or []:
                q.append(dict(step))
            return await _send_json(send, 200, {"ok": True, "queued": len(q)})
        if path == "/_sim/default":
            if body.get("step") is None:
                self.defaults.pop(str(body["model"]), None)
            else:
                self.defaults[str(body["model"])] = dict(body["step"])
            return await _send_json(send, 200, {"ok": True})
        await _send_json(send, 404, {"error": f"no control route {path}"})

    def _log(self, scope, req: dict[str, Any], step: dict[str, Any] | None) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        model = str(req.get("model") or "")
        self.log.append({"seq": next(self.seq), "t": time.monotonic(), "method": scope["method"],
                         "path": scope["path"], "model": model, "stream": bool(req.get("stream")),
                         "client_port": (scope.get("client") or ("", 0))[1],
                         "headers": headers, "body": req, "step": dict(step) if step is not None else None})

    async def _embeddings(self, scope, receive, send) -> None:
        req = orjson.loads(await _read_body(receive) or b"{}")
        model = str(req.get("model") or "")
        step = self._next_step(model)
        self._log(scope, req, step)
        step = step or {}
        status = int(step.get("status", 200))
        if status >= 300:
            return await _send_error("openai", send, status, step)
        items = req.get("input")
        items = [items] if isinstance(items, str) or (items and isinstance(items[0], int)) else list(items or [])
        dims = int(req.get("dimensions") or 8)
        data = []
        for i, item in enumerate(items):
            vec = embedding_vector(item if isinstance(item, str) else json.dumps(item), dims)
            if req.get("encoding_format") == "base64":
                import base64
                import struct

                vec = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vec})
        toks = sum(estimate_tokens(x) if isinstance(x, str) else len(x) for x in items)
        await _send_json(send, 200, {"object": "list", "data": data, "model": model,
                                     "usage": {"prompt_tokens": toks, "total_tokens": toks}})

    async def _responses(self, scope, receive, send) -> None:
        req = orjson.loads(await _read_body(receive) or b"{}")
        model = str(req.get("model") or "")
        self._log(scope, req, None)
        inp = req.get("input")
        text = inp if isinstance(inp, str) else last_user_text([m for m in inp or [] if isinstance(m, dict)])
        content = default_content(model, text)
        rid = f"resp_sim{next(self.ids)}"
        output: list[dict[str, Any]] = [
            {"id": f"ws_sim{i}", "type": f"{t['type']}_call", "status": "completed"}
            for i, t in enumerate(req.get("tools") or []) if t.get("type") != "function"]
        output.append({"id": f"msg_sim{rid}", "type": "message", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": content, "annotations": []}]})
        usage = {"input_tokens": estimate_tokens(text), "output_tokens": estimate_tokens(content),
                 "total_tokens": estimate_tokens(text) + estimate_tokens(content)}
        resp = {"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed",
                "model": model, "output": output, "usage": usage, "tools": req.get("tools") or [],
                "parallel_tool_calls": True, "tool_choice": "auto"}
        if not req.get("stream"):
            return await _send_json(send, 200, resp)

        def ev(data: dict) -> bytes:
            return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

        head = [ev({"type": "response.created", "sequence_number": 0,
                    "response": {**resp, "status": "in_progress", "output": [], "usage": None}})]
        pieces = [ev({"type": "response.output_text.delta", "sequence_number": i + 1, "item_id": f"msg_sim{rid}",
                      "output_index": len(output) - 1, "content_index": 0, "delta": p})
                  for i, p in enumerate(split_chunks(content, None))]
        tail = [ev({"type": "response.completed", "sequence_number": len(pieces) + 1, "response": resp})]
        await _stream(send, receive, {}, head, pieces, tail)

    def _next_step(self, model: str) -> dict[str, Any] | None:
        for key in (model, "*"):
            q = self.scripts.get(key)
            if q:
                step = q[0]
                left = int(step.get("count", 1)) - 1
                if left <= 0:
                    q.popleft()
                else:
                    step["count"] = left
                return step
        for key in (model, "*"):
            if key in self.defaults:
                return self.defaults[key]
        return _builtin_step(model)

    # -- model calls ------------------------------------------------------------------

    async def _model_call(self, wire: str, scope, receive, send) -> None:
        raw = await _read_body(receive)
        try:
            req = orjson.loads(raw)
            if not isinstance(req, dict):
                raise ValueError("body is not an object")
        except (orjson.JSONDecodeError, ValueError) as e:
            return await _send_error(wire, send, 400, {"error_message": f"invalid JSON body: {e}"})
        model = str(req.get("model") or "")
        self.models_seen.setdefault(model, None)
        step = self._next_step(model)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.log.append({"seq": next(self.seq), "t": time.monotonic(), "method": scope["method"],
                         "path": scope["path"], "model": model, "stream": bool(req.get("stream")),
                         "client_port": (scope.get("client") or ("", 0))[1],
                         "headers": headers, "body": req, "step": dict(step) if step is not None else None})
        step = step or {}
        if not model or not isinstance(req.get("messages"), list):
            return await _send_error(wire, send, 400, {"error_message": "'model' and 'messages' are required"})
        if step.get("delay_ms"):
            await _sleep_or_disconnect(receive, float(step["delay_ms"]) / 1000)
        if step.get("hang"):
            await _sleep_or_disconnect(receive, float(step.get("hang_s", 600)))
            raise _Drop
        if step.get("drop") or (step.get("disconnect_after") is not None and not req.get("stream")):
            raise _Drop
        status = int(step.get("status", 200))
        if status >= 300:
            return await _send_error(wire, send, status, step)
        if "raw_body" in step:
            return await _send_bytes(send, status, str(step["raw_body"]).encode(), step.get("headers"))
        answer = build_answer(wire, model, req, step)
        if wire == "openai":
            await self._openai(send, receive, model, req, step, answer)
        else:
            await self._anthropic(send, receive, model, req, step, answer)

    async def _openai(self, send, receive, model, req, step, a: Answer) -> None:
        cid, created = f"chatcmpl-sim{next(self.ids)}", int(time.time())
        tcs = [{"id": tc["id"], "type": "function", "function": {"name": tc["name"], "arguments": tc["arguments"]}}
               for tc in a.tool_calls]
        usage = {"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens,
                 "total_tokens": a.prompt_tokens + a.completion_tokens}
        if not req.get("stream"):
            msg: dict[str, Any] = {"role": "assistant", "content": a.content}
            if tcs:
                msg["tool_calls"] = tcs
            body = {"id": cid, "object": "chat.completion", "created": created, "model": model,
                    "system_fingerprint": "fp_sim",
                    "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": a.finish_reason}],
                    "usage": usage}
            return await _send_json(send, 200, body, step.get("headers"))
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_sim"}

        def chunk(delta: dict | None, finish: str | None = None, use: dict | None = None) -> bytes:
            d = dict(base)
            d["choices"] = [] if delta is None else [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            if use is not None:
                d["usage"] = use
            return b"data: " + orjson.dumps(d) + b"\n\n"

        pieces: list[bytes] = []
        if a.content is not None or not tcs:
            for i, p in enumerate(split_chunks(a.content or "", step.get("chunks"))):
                pieces.append(chunk({"role": "assistant", "content": p} if i == 0 else {"content": p}))
        for i, tc in enumerate(tcs):
            first = {"index": i, "id": tc["id"], "type": "function",
                     "function": {"name": tc["function"]["name"], "arguments": ""}}
            delta = {"tool_calls": [first]}
            if not pieces:
                delta["role"] = "assistant"
                delta["content"] = None
            pieces.append(chunk(delta))
            for part in _split_args(tc["function"]["arguments"]):
                pieces.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]}))
        pieces.append(chunk({}, a.finish_reason))
        tail = []
        if (req.get("stream_options") or {}).get("include_usage"):
            tail.append(chunk(None, None, usage))
        tail.append(b"data: [DONE]\n\n")
        await _stream(send, receive, step, [], pieces, tail)

    async def _anthropic(self, send, receive, model, req, step, a: Answer) -> None:
        mid = f"msg_sim{next(self.ids)}"
        stop = _ANTHROPIC_STOP.get(a.finish_reason, a.finish_reason)
        blocks: list[dict[str, Any]] = []
        if (req.get("thinking") or {}).get("type") == "enabled":
            blocks.append({"type": "thinking", "thinking": "sim thinks", "signature": "sim-sig"})
        if a.content:
            blocks.append({"type": "text", "text": a.content})
        for tc in a.tool_calls:
            blocks.append({"type": "tool_use", "id": tc["id"].replace("call_", "toolu_"), "name": tc["name"],
                           "input": json.loads(tc["arguments"] or "{}")})
        if not blocks:
            blocks.append({"type": "text", "text": ""})
        usage = {"input_tokens": a.prompt_tokens, "output_tokens": a.completion_tokens}
        if not req.get("stream"):
            body = {"id": mid, "type": "message", "role": "assistant", "model": model, "content": blocks,
                    "stop_reason": stop, "stop_sequence": None, "usage": usage}
            return await _send_json(send, 200, body, step.get("headers"))

        def ev(name: str, data: dict) -> bytes:
            return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

        head = [ev("message_start", {"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": a.prompt_tokens, "output_tokens": 1}}})]
        pieces: list[bytes] = []
        for idx, blk in enumerate(blocks):
            if blk["type"] == "thinking":
                start = {"type": "thinking", "thinking": ""}
                parts = [{"type": "thinking_delta", "thinking": blk["thinking"]},
                         {"type": "signature_delta", "signature": blk["signature"]}]
            elif blk["type"] == "text":
                start = {"type": "text", "text": ""}
                parts = [{"type": "text_delta", "text": p} for p in split_chunks(blk["text"], step.get("chunks"))]
            else:
                start = {"type": "tool_use", "id": blk["id"], "name": blk["name"], "input": {}}
                parts = [{"type": "input_json_delta", "partial_json": p}
                         for p in _split_args(json.dumps(blk["input"]))]
            opener = ev("content_block_start", {"type": "content_block_start", "index": idx, "content_block": start})
            if idx == 0:
                head += [opener, ev("ping", {"type": "ping"})]
            else:
                pieces.append(opener)
            pieces += [ev("content_block_delta", {"type": "content_block_delta", "index": idx, "delta": d})
                       for d in parts]
            pieces.append(ev("content_block_stop", {"type": "content_block_stop", "index": idx}))
        tail = [ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": a.completion_tokens}}),
                ev("message_stop", {"type": "message_stop"})]
        await _stream(send, receive, step, head, pieces, tail)


def _split_args(args: str) -> list[str]:
    """Tool-call arguments in a few fragments, as real providers stream them."""
    if len(args) <= 8:
        return [args]
    n = 3
    size = math.ceil(len(args) / n)
    return [args[i:i + size] for i in range(0, len(args), size)]


async def _stream(send, receive, step: dict[str, Any], head: list[bytes], pieces: list[bytes],
                  tail: list[bytes]) -> None:
    """Send an SSE response: ``head`` events, ``pieces`` (the countable chunks), ``tail``."""
    headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
    headers += [(k.encode(), str(v).encode()) for k, v in (step.get("headers") or {}).items()]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for b in head:
        await send({"type": "http.response.body", "body": b, "more_body": True})
    cut = step.get("disconnect_after")
    stall = step.get("stall_after")
    delay = float(step.get("chunk_delay_ms") or 0) / 1000
    for i, b in enumerate(pieces):
        if cut is not None and i >= int(cut):
            await asyncio.sleep(0.02)  # let the sent chunks reach the client first
            raise _Drop
        if stall is not None and i >= int(stall):
            await _sleep_or_disconnect(receive, float(step.get("hang_s", 600)))
            raise _Drop
        if i and delay:
            await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": b, "more_body": True})
    if cut is not None and int(cut) >= len(pieces):
        await asyncio.sleep(0.02)
        raise _Drop
    await send({"type": "http.response.body", "body": b"".join(tail), "more_body": False})


async def _read_body(receive) -> bytes:
    parts = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _Drop
        parts.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(parts)


async def _sleep_or_disconnect(receive, seconds: float) -> None:
    """Sleep, but stop early when the client goes away (so hung handlers do not pile up)."""
    async def wait_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
    try:
        await asyncio.wait_for(wait_disconnect(), seconds)
    except TimeoutError:
        return
    raise _Drop


def _abort(send) -> None:
    """Close the client connection abruptly (uvicorn's per-request cycle owns the transport)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("simulated disconnect")  # uvicorn then closes the connection
    transport.close()


async def _send_bytes(send, status: int, body: bytes, extra: dict[str, Any] | None = None,
                      ctype: bytes = b"application/json") -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), str(v).encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send, status: int, obj: Any, extra: dict[str, Any] | None = None) -> None:
    await _send_bytes(send, status, orjson.dumps(obj), extra)


async def _send_error(wire: str, send, status: int, step: dict[str, Any]) -> None:
    message = step.get("error_message") or f"simulated {status}"
    etype = step.get("error_type") or _ERROR_TYPES.get(status, "api_error")
    extra = dict(step.get("headers") or {})
    if step.get("retry_after") is not None:
        extra["retry-after"] = str(step["retry_after"])
    if "raw_body" in step:
        return await _send_bytes(send, status, str(step["raw_body"]).encode(), extra)
    if wire == "anthropic":
        body: dict[str, Any] = {"type": "error", "error": {"type": etype, "message": message}}
    else:
        body = {"error": {"message": message, "type": etype, "param": None, "code": step.get("error_code")}}
    await _send_json(send, status, body, extra)


# ----------------------------------------------------------------------------------------
# the Python handle used by tests
# ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UpstreamSim:
    """A handle on a running simulator process (see the module docstring for the API)."""

    def __init__(self, url: str, proc: subprocess.Popen | None = None) -> None:
        self.url = url.rstrip("/")
        self.openai_base = self.url + "/v1"
        #: LiteLLM's ``anthropic/...`` appends ``/v1/messages`` to ``api_base``.
        self.anthropic_base = self.url
        self.port = int(urllib.parse.urlsplit(self.url).port or 80)
        self._proc = proc

    # -- lifecycle --------------------------------------------------------------------

    @classmethod
    def start(cls, port: int | None = None, *, log_path: str | None = None, timeout: float = 20.0) -> UpstreamSim:
        port = port or _free_port()
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        sim = cls(f"http://127.0.0.1:{port}", proc)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"upstream simulator exited with code {proc.returncode}")
            try:
                sim._call("GET", "/_sim/health", timeout=0.5)
                return sim
            except OSError:
                if time.monotonic() > deadline:
                    sim.stop()
                    raise TimeoutError("upstream simulator did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)

    def __enter__(self) -> UpstreamSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control ----------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        data = orjson.dumps(body) if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return orjson.loads(r.read())

    def script(self, model: str, steps: list[dict[str, Any]] | dict[str, Any]) -> None:
        """Queue steps (FIFO) for requests naming ``model`` on the wire (``"*"`` = any)."""
        if isinstance(steps, dict):
            steps = [steps]
        self._call("POST", "/_sim/script", {"model": model, "steps": list(steps)})

    def set_default(self, model: str, step: dict[str, Any] | None) -> None:
        self._call("POST", "/_sim/default", {"model": model, "step": step})

    def requests(self, model: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        q = "?" + urllib.parse.urlencode({"model": model}) if model is not None else ""
        entries = self._call("GET", "/_sim/requests" + q)
        return [e for e in entries if path is None or e["path"] == path]

    def reset(self) -> None:
        self._call("POST", "/_sim/reset", {})


def main() -> None:
    p = argparse.ArgumentParser(description="tiergate upstream simulator (OpenAI + Anthropic wire formats)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    a = p.parse_args()
    import uvicorn

    uvicorn.run(SimApp(), host=a.host, port=a.port, loop="uvloop", http="httptools", lifespan="on",
                access_log=False, log_level="warning", server_header=False, date_header=False,
                timeout_keep_alive=120, backlog=2048)


if __name__ == "__main__":
    main()
