"""Cache keys: the request as the gateway resolved it, normalized, hashed per tenant.

Two requests share an exact key only if they are the same question to the same model
for the same tenant: the resolved model reference (alias followed, ``tier:N``, ``auto``,
``cascade:<policy>``) and the deployment group the router chose, every message, the
tools and tool choice, the response format and every sampling parameter. Normalized
first, so that spellings that cannot change the answer do not split the cache:

* JSON key order and whitespace (canonical JSON, sorted keys; tool-call arguments, which
  are JSON inside a string, re-serialized the same way);
* defaults filled (``temperature`` 1, ``top_p`` 1, ``n`` 1, penalties 0, ``tool_choice``
  ``auto`` with tools and ``none`` without, ``response_format`` text);
* equivalent spellings: ``max_completion_tokens`` for ``max_tokens``, a one-string
  ``stop`` as a list, a text-only content list as its string;
* fields that cannot change the answer are left out (``user``, ``metadata``, ``store``).

The *semantic scope* is the same thing without the last user message: every other part
must match exactly for a semantic candidate to be considered at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

#: Parameters that cannot change the answer (bookkeeping for the provider).
IGNORED = frozenset({"user", "metadata", "store", "stream", "stream_options", "model"})
#: OpenAI's defaults, filled so that "absent" and "default" are one key.
DEFAULTS: Mapping[str, Any] = {"temperature": 1.0, "top_p": 1.0, "n": 1, "presence_penalty": 0.0,
                               "frequency_penalty": 0.0}


def canonical(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def digest(*parts: Any) -> str:
    return hashlib.sha256(canonical(list(parts))).hexdigest()


def _number(v: Any) -> Any:
    # 0 and 0.0 are one temperature; bools stay bools.
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    return v


def _content(c: Any) -> Any:
    if isinstance(c, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in c):
        return "".join(str(p.get("text", "")) for p in c)
    return c


def _arguments(text: Any) -> Any:
    if isinstance(text, str):
        try:
            return canonical(orjson.loads(text)).decode()
        except orjson.JSONDecodeError:
            return text
    return text


def message(m: Any) -> Any:
    """One message, normalized (None-valued fields dropped, content and tool calls canonical)."""
    if not isinstance(m, dict):
        return m
    out = {k: v for k, v in m.items() if v is not None}
    if "content" in out:
        out["content"] = _content(out["content"])
    calls = out.get("tool_calls")
    if isinstance(calls, list):
        out["tool_calls"] = [
            {**tc, "function": {**tc["function"], "arguments": _arguments(tc["function"].get("arguments"))}}
            if isinstance(tc, dict) and isinstance(tc.get("function"), dict) else tc
            for tc in calls]
    return out


def parameters(body: Mapping[str, Any]) -> dict[str, Any]:
    """Everything but the messages, normalized and with defaults filled."""
    out = {k: _number(v) for k, v in body.items() if k not in IGNORED and k != "messages" and v is not None}
    for k, v in DEFAULTS.items():
        out.setdefault(k, _number(v))
    if "max_completion_tokens" in out:
        out["max_tokens"] = out.pop("max_completion_tokens")
    if isinstance(out.get("stop"), str):
        out["stop"] = [out["stop"]]
    if not out.get("stop"):
        out.pop("stop", None)
    tools = out.get("tools") or out.get("functions")
    out.setdefault("tool_choice", "auto" if tools else "none")
    if out.get("response_format") in ({"type": "text"}, None):
        out.pop("response_format", None)
    return out


def deterministic(body: Mapping[str, Any]) -> bool:
    """Temperature 0 or a seed: the same request asks for the same answer."""
    t = body.get("temperature")
    return body.get("seed") is not None or (isinstance(t, int | float) and not isinstance(t, bool) and t == 0)


def exact_key(tenant: str, target: str, group: str, body: Mapping[str, Any]) -> str:
    msgs = body.get("messages") or []
    return digest("exact/v1", tenant, target, group, [message(m) for m in msgs], parameters(body))


def question(m: Mapping[str, Any]) -> str:
    """The text of a user message (its text parts joined), "" if it has none."""
    c = m.get("content")
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return "\n".join(str(p.get("text", "")) for p in c if isinstance(p, dict) and p.get("type") == "text")
    return ""


def semantic_scope(tenant: str, target: str, group: str, body: Mapping[str, Any]) -> str:
    """Everything that must match exactly for a semantic hit: the exact key's parts with
    the last user message's *text* (compared by similarity) left out. Its other parts
    (images, when a catalog opts in) stay in the scope, exactly."""
    msgs = body.get("messages") or []
    last = msgs[-1] if msgs and isinstance(msgs[-1], dict) else {}
    c = last.get("content")
    rest = [p for p in c if not (isinstance(p, dict) and p.get("type") == "text")] if isinstance(c, list) else []
    return digest("semantic/v1", tenant, target, group, [message(m) for m in msgs[:-1]], rest, last.get("name"),
                  parameters(body))
