"""A local generation -> the OpenAI shapes, and a request -> llama.cpp's arguments.

Pure functions over plain data (no ``llama_cpp``): the sampling defaults of a local
answer, the ``chat.completion`` built from a finished :class:`Generation` (tool calls
parsed, cut-off JSON closed), and a finished answer replayed as stream chunks.
"""

from __future__ import annotations

import time
from typing import Any

from tiergate.config.catalog import ModelSpec
from tiergate.errors import UpstreamBadRequest
from tiergate_edge.chat_prompt import ChatPlan, close_json, parse_tool_calls
from tiergate_edge.llama_runtime import Generation, grammar_for

#: OpenAI parameters passed to llama.cpp as they are (others are ignored; JSON is a grammar).
_PASSTHROUGH = ("temperature", "top_p", "top_k", "stop", "seed", "presence_penalty", "frequency_penalty",
                "logit_bias")


def chat_kwargs(body: dict[str, Any], spec: ModelSpec, plan: ChatPlan, *, default_max_tokens: int,
                seed: int) -> dict[str, Any]:
    """The ``create_chat_completion`` keyword arguments for a planned request. Defaults
    chosen for small local models: temperature 0.2, repeat penalty 1.1, a fixed seed (the
    same request gets the same answer), and a short ``max_tokens`` so a runaway loop ends
    in seconds; the client's values win, capped by the catalog's ``max_output_tokens``."""
    if (body.get("n") or 1) != 1:
        raise UpstreamBadRequest("the local model supports n=1 only", param="n")
    kw: dict[str, Any] = {k: body[k] for k in _PASSTHROUGH if body.get(k) is not None}
    kw.setdefault("temperature", 0.2)
    kw.setdefault("seed", seed)
    kw["repeat_penalty"] = 1.1
    kw["messages"] = plan.messages
    if plan.template_tools is not None:
        kw["tools"] = list(plan.template_tools)  # rendered by the model's own chat template
    asked = body.get("max_completion_tokens") or body.get("max_tokens")
    max_out = int(asked) if asked else default_max_tokens
    if spec.max_output_tokens:
        max_out = min(max_out, spec.max_output_tokens)
    kw["max_tokens"] = max_out
    kw["model"] = spec.name
    grammar = grammar_for(plan)
    if grammar is not None:
        kw["grammar"] = grammar
    return kw


def completion_body(gen: Generation, plan: ChatPlan, model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` from a finished generation."""
    finish = gen.finish_reason or ("length" if gen.cancelled else "stop")
    text = gen.text
    if plan.mode == "json":
        text = close_json(text)  # cut off by max_tokens: still parses
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if plan.mode == "tools":
        content, calls = parse_tool_calls(gen.text, plan.tool_names, bare=plan.template_tools is not None)
        if calls:
            message = {"role": "assistant", "content": content, "tool_calls": calls}
            finish = "tool_calls"
    return {"id": "chatcmpl-" + format(time.time_ns(), "x"), "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
                      "total_tokens": gen.prompt_tokens + gen.completion_tokens}}


def _chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def buffered_chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A finished completion as stream chunks (tool answers are parsed before they are sent)."""
    cid, created, model = body["id"], body["created"], body["model"]
    choice = body["choices"][0]
    msg = choice["message"]
    chunks = [_chunk(cid, created, model, {"role": "assistant", "content": ""})]
    if msg.get("tool_calls"):
        calls = [{"index": i, **c} for i, c in enumerate(msg["tool_calls"])]
        chunks.append(_chunk(cid, created, model, {"tool_calls": calls}))
    elif msg.get("content"):
        chunks.append(_chunk(cid, created, model, {"content": msg["content"]}))
    chunks.append(_chunk(cid, created, model, {}, choice["finish_reason"]))
    chunks.append({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [], "usage": body["usage"]})
    return chunks
