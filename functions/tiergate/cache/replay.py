"""Between a cached ``chat.completion`` and a stream of ``chat.completion.chunk`` dicts.

:func:`replay_chunks` turns a stored answer into the chunks a live stream would have
sent (role and content, tool calls with their ``index``, the finish reason, then a
usage-only chunk); :class:`StreamCollector` does the reverse for a streamed answer, so
it can be stored once it is complete (never before: a stream cut short is not an answer).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any


def hit_response(cached: dict[str, Any], request_id: str, saved_usd: float) -> dict[str, Any]:
    """The body a hit sends: the cached answer under this request's id, costing nothing."""
    r = copy.deepcopy(cached)
    r["id"] = request_id
    usage = r.setdefault("usage", {})
    usage["cost_usd"] = 0.0
    usage["cache_saved_usd"] = round(saved_usd, 10)
    return r


def replay_chunks(r: dict[str, Any], model: str) -> Iterator[dict[str, Any]]:
    base = {"id": r.get("id", "chatcmpl-tg"), "object": "chat.completion.chunk",
            "created": r.get("created", int(time.time())), "model": r.get("model", model)}
    for i, ch in enumerate(r.get("choices") or ()):
        msg = ch.get("message") or {}
        delta = {k: v for k, v in msg.items() if v is not None}
        if delta.get("tool_calls"):
            delta["tool_calls"] = [{**tc, "index": j} for j, tc in enumerate(delta["tool_calls"])]
        yield {**base, "choices": [{"index": i, "delta": delta, "finish_reason": None}]}
        yield {**base, "choices": [{"index": i, "delta": {}, "finish_reason": ch.get("finish_reason")}]}
    yield {**base, "choices": [], "usage": r.get("usage")}


class StreamCollector:
    """Rebuilds the ``chat.completion`` a stream delivered, chunk by chunk."""

    def __init__(self) -> None:
        self.head: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self._choices: dict[int, dict[str, Any]] = {}

    def add(self, chunk: dict[str, Any]) -> None:
        if not self.head:
            self.head = {k: chunk[k] for k in ("id", "created", "model", "system_fingerprint") if k in chunk}
        if chunk.get("usage"):
            self.usage = dict(chunk["usage"])
        for ch in chunk.get("choices") or ():
            c = self._choices.setdefault(int(ch.get("index", 0)), {"content": [], "tools": {}, "msg": {},
                                                                   "finish": None})
            delta = ch.get("delta") or {}
            for k, v in delta.items():
                if k == "content" and v:
                    c["content"].append(v)
                elif k == "tool_calls" and v:
                    for tc in v:
                        slot = c["tools"].setdefault(int(tc.get("index", 0)), {"function": {"arguments": ""}})
                        for field in ("id", "type"):
                            if tc.get(field):
                                slot[field] = tc[field]
                        fn = tc.get("function") or {}
                        if fn.get("name"):
                            slot["function"]["name"] = fn["name"]
                        slot["function"]["arguments"] += fn.get("arguments") or ""
                elif k not in ("content", "tool_calls") and v is not None:
                    c["msg"][k] = v
            if ch.get("finish_reason"):
                c["finish"] = ch["finish_reason"]

    @property
    def complete(self) -> bool:
        """Every choice finished (a stream cut short, or that sent nothing, is not an answer)."""
        return bool(self._choices) and all(c["finish"] for c in self._choices.values())

    def completion(self) -> dict[str, Any]:
        choices = []
        for i in sorted(self._choices):
            c = self._choices[i]
            msg: dict[str, Any] = {"role": "assistant", **c["msg"]}
            msg["content"] = "".join(c["content"]) if c["content"] or not c["tools"] else None
            if c["tools"]:
                msg["tool_calls"] = [{"type": "function", **c["tools"][j]} for j in sorted(c["tools"])]
            choices.append({"index": i, "message": msg, "finish_reason": c["finish"]})
        return {**self.head, "object": "chat.completion", "choices": choices, "usage": self.usage or {}}
