"""Features of a request (and of an answer) for the learned router and scorer: pure Python.

The same functions run at training time (``tiergate router train``) and at serving time,
so the two cannot drift. A request becomes a set of feature strings:

* the last user message's words and word bigrams (lowercased; numbers by their shape,
  ``#3`` for a three-digit number; CJK text as character bigrams), read from at most its
  first :data:`HEAD_TOKENS` and last :data:`TAIL_TOKENS` tokens so a decision costs the
  same on any prompt length;
* the system prompt's and the earlier turns' words (prefixed ``s:`` / ``c:``);
* shape buckets: length, number of turns, digits, code fences, question marks, list
  items, tools / JSON / images asked for (prefixed ``_``).

An answer adds its own words and bigrams (``a:``) and shape buckets (``_a...``). The
vocabulary and weights come from the artifact; an unknown feature weighs nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tiergate.patterns import LazyPattern

#: Bumped when the feature strings change: an artifact names the version it was trained on.
FEATURE_VERSION = 1
HEAD_TOKENS = 768
TAIL_TOKENS = 256
CONTEXT_CHARS = 2000
ANSWER_TOKENS = 512

_TOKEN = LazyPattern(r"[^\W\d_]+|\d+(?:[.,]\d+)*|[^\w\s]")
#: The same tokens for ASCII text, ~2.5x faster (no Unicode classes to test).
_ASCII_TOKEN = LazyPattern(r"[a-z]+|\d+(?:[.,]\d+)*|[^\w\s]")
_CJK = LazyPattern(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
_FENCE = "```"
_LIST = LazyPattern(r"^\s*(?:\d{1,2}[.)]|[-*•])\s", re.M)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _has_image(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") in ("image_url", "input_image") for p in content)


def _num(t: str) -> str:
    return _NUM_SHAPE[min(len(t), 6)] if t[0].isdigit() else t


_NUM_SHAPE = ["#0", "#1", "#2", "#3", "#4", "#5", "#6"]


def tokens(text: str) -> list[str]:
    """Lowercased word tokens; numbers as ``#<digits>``; CJK runs as character bigrams."""
    low = text.lower()
    if low.isascii():
        return [_NUM_SHAPE[min(len(t), 6)] if t[0].isdigit() else t for t in _ASCII_TOKEN.findall(low)]
    toks = _TOKEN.findall(low)
    out: list[str] = []
    for t in toks:
        if not t.isascii() and _CJK.search(t):
            out.extend(t[i:i + 2] for i in range(max(1, len(t) - 1)))
        else:
            out.append(_num(t))
    return out


def _bucket(n: float) -> int:
    """log2 bucket of a non-negative count: 0, 1, 2-3, 4-7, ..."""
    return 0 if n <= 0 else min(int(math.log2(n)) + 1, 16)


def _words(toks: Sequence[str], prefix: str, out: set[str]) -> None:
    if prefix:
        out.update(prefix + t for t in toks)
    else:
        out.update(toks)
        out.update(f"{a} {b}" for a, b in zip(toks, toks[1:], strict=False))


def _window(toks: list[str], head: int, tail: int) -> list[str]:
    if len(toks) <= head + tail:
        return toks
    return toks[:head] + ["<cut>"] + toks[-tail:]


def split_messages(messages: Sequence[Mapping[str, Any]]) -> tuple[str, str, str, int, bool, bool]:
    """(last user text, system text, earlier turns' text, turns, tool results, images)."""
    last = -1
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            last = i
            break
    question = _content_text(messages[last].get("content")) if last >= 0 else ""
    system: list[str] = []
    context: list[str] = []
    tool_results = image = False
    for i, m in enumerate(messages):
        role = m.get("role")
        content = m.get("content")
        if _has_image(content):
            image = True
        if role in ("system", "developer"):
            system.append(_content_text(content))
        elif role in ("tool", "function"):
            tool_results = True
        elif i != last:
            context.append(_content_text(content))
    ctx = " ".join(context)
    if len(ctx) > CONTEXT_CHARS:
        ctx = ctx[: CONTEXT_CHARS // 2] + " " + ctx[-CONTEXT_CHARS // 2:]
    sys_text = " ".join(system)[:CONTEXT_CHARS]
    turns = sum(1 for m in messages if m.get("role") == "user")
    return question, sys_text, ctx, turns, tool_results, image


def request_features(messages: Sequence[Mapping[str, Any]], body: Mapping[str, Any] | None = None) -> set[str]:
    """The feature strings of a chat request (its ``messages`` and, when given, the body's
    ``tools`` / ``response_format``)."""
    question, system, context, turns, tool_results, image = split_messages(messages)
    toks = tokens(question)
    out: set[str] = set()
    _words(_window(toks, HEAD_TOKENS, TAIL_TOKENS), "", out)
    if system:
        _words(tokens(system)[:HEAD_TOKENS], "s:", out)
    if context:
        _words(tokens(context)[:HEAD_TOKENS], "c:", out)
    n = len(question)
    digits = sum(1 for t in toks if t[0] == "#")
    out.add("_bias")
    out.add(f"_len:{_bucket(n)}")
    out.add(f"_tok:{_bucket(len(toks))}")
    out.add(f"_turns:{min(turns, 6)}")
    out.add(f"_digits:{_bucket(digits)}")
    out.add(f"_q:{min(question.count('?') + question.count('？'), 4)}")
    out.add(f"_lines:{_bucket(question.count(chr(10)))}")
    out.add(f"_items:{_bucket(len(_LIST.findall(question)))}")
    if _FENCE in question:
        out.add("_code")
    if system:
        out.add("_system")
    if tool_results:
        out.add("_tool_results")
    if image:
        out.add("_image")
    if not question.isascii() and _CJK.search(question):
        out.add("_cjk")
    if body:
        if body.get("tools") or body.get("functions"):
            out.add("_tools")
        rf = body.get("response_format")
        if isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema"):
            out.add("_json")
    return out


_NUMBER = LazyPattern(r"-?\d+(?:[.,]\d+)*")
_HEDGE = LazyPattern(r"\b(?:not sure|i think|maybe|perhaps|might|probably|unclear|i don'?t know|cannot|can'?t)\b")


def answer_features(prompt: set[str], question: str, answer: str, model: str | None) -> set[str]:
    """The scorer's features: the prompt's, the answer's words and bigrams (``a:``), and
    how the answer relates to the question (length ratio, numbers reused, hedges)."""
    out = set(prompt)
    toks = tokens(answer)
    win = _window(toks, ANSWER_TOKENS // 2, ANSWER_TOKENS // 2)
    out.update("a:" + t for t in win)
    out.update(f"a:{a} {b}" for a, b in zip(win, win[1:], strict=False))
    out.add(f"_alen:{_bucket(len(answer))}")
    out.add(f"_atok:{_bucket(len(toks))}")
    ratio = (len(answer) + 1) / (len(question) + 1)
    out.add(f"_aratio:{max(-6, min(6, round(math.log2(ratio))))}")
    nums = _NUMBER.findall(answer)
    out.add(f"_anums:{_bucket(len(nums))}")
    if nums:
        qnums = set(_NUMBER.findall(question))
        out.add("_alast_in_q" if nums[-1] in qnums else "_alast_new")
    low = answer.lower()
    hedges = len(_HEDGE.findall(low))
    out.add(f"_ahedge:{min(hedges, 3)}")
    if not answer.strip():
        out.add("_aempty")
    if _FENCE in answer:
        out.add("_acode")
    if model:
        out.add(f"_model:{model}")
    return out
