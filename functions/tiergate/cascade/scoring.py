"""Answer scoring: is a cheap answer good enough, and why (issue 5).

Deterministic checks run first and are cheap (tens of microseconds; see
``bench/cascade``): empty, refusal, truncated (``finish_reason: length``), degenerate
(a loop of the same few words, or the question echoed back), invalid JSON
when JSON was asked for, code that does not parse when code was asked for, ignoring the
required format (a list, N items, a code block), and hedging phrases, in English and
Japanese. What the request asked for is read once into :class:`Expectations`.

The score is in [0, 1]: hard failures cap it (``min``), soft ones multiply it down. An
optional judge model's 0-10 verdict is blended in by the engine (:func:`blend_judge`).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tiergate.patterns import LazyPattern
from tiergate.request.classify import last_user_text


@dataclass(frozen=True, slots=True)
class Expectations:
    """What the request asked the answer to look like."""

    json: bool = False
    #: JSON enforced by ``response_format`` (the whole answer must parse, no code fence).
    json_strict: bool = False
    code: bool = False
    #: ``python`` (checked with ``ast``), another language name (bracket balance), or None.
    code_lang: str | None = None
    code_block: bool = False
    list_: bool = False
    items: int | None = None
    tools: bool = False
    #: The client capped the answer (max_tokens): stopping at that cap is what it asked for,
    #: and a stronger tier would stop at the same cap, so it is not a reason to escalate.
    capped: bool = False
    #: The last user turn (normalized, first 2,000 characters): an answer that repeats it back is degenerate.
    prompt: str = ""


#: Below this a score is a hard failure (empty, refused, invalid JSON/code, truncated): no
#: judge is asked about it, and a judge's verdict cannot lift it.
HARD_FAILURE = 0.3


@dataclass(frozen=True, slots=True)
class Score:
    value: float
    reasons: tuple[str, ...]
    #: The judge's 0-10 verdict when one ran.
    judge: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"value": round(self.value, 4), "reasons": list(self.reasons), "judge": self.judge}


# --- what was asked -----------------------------------------------------------------

_LANGS = {
    "python": "python", "py": "python", "javascript": "javascript", "js": "javascript", "typescript": "typescript",
    "ts": "typescript", "java": "java", "go": "go", "golang": "go", "rust": "rust", "c": "c", "cpp": "cpp",
    "c++": "cpp", "c#": "csharp", "csharp": "csharp", "sql": "sql", "bash": "bash", "sh": "bash", "ruby": "ruby",
    "kotlin": "kotlin", "swift": "swift", "php": "php",
}
# Lookarounds, not \b: in "Pythonで" the Japanese particle is a word character too.
_ASK_LANG = LazyPattern(r"(?<![a-z])(python|javascript|typescript|golang|rust|java|kotlin|swift|ruby|php|sql|bash|"
                       r"c\+\+|c#)(?![a-z+#])", re.I)
_ASK_CODE = LazyPattern(
    r"\b(write|implement|create|fix|refactor|give me)\b[^.?!\n]{0,60}\b(code|function|class|method|script|program|"
    r"snippet|query|regex)\b|```|コードを|関数を|実装して|プログラムを|スクリプトを|書いて.{0,10}(コード|関数)",
    re.I,
)
_ASK_JSON = LazyPattern(r"\bjson\b|ＪＳＯＮ", re.I)
_ASK_JSON_ONLY = LazyPattern(r"\b(as|in|return|respond with|output|reply (in|with))\b[^.\n]{0,20}\bjson\b|json\s*(形式|で)", re.I)
_ASK_BLOCK = LazyPattern(r"code block|コードブロック", re.I)
_ASK_LIST = LazyPattern(r"^\s*list\b|\b(a|the) list of\b|\bbullet(ed)? (points?|list)|\bbullets\b|\benumerate\b"
                       r"|箇条書き|リストアップ|列挙|一覧", re.I | re.M)
_ASK_N = LazyPattern(
    r"\b(\d{1,2}|two|three|four|five|six|seven|eight|nine|ten)\s+(?:\w+\s+)?(items|ways|examples|reasons|steps|tips|"
    r"ideas|points|names|things|options|questions|bullet points|bullets|facts|benefits|ideas)\b"
    r"|(\d{1,2})\s*(?:個|つ|点|項目|件)"
    r"|\b(?:list|name|give(?: me)?|suggest|provide)\s+(\d{1,2}|two|three|four|five|six|seven|eight|nine|ten)\s+\w",
    re.I,
)
_WORD_N = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}


def expectations(body: Mapping[str, Any]) -> Expectations:
    """Read what the answer should look like from the request (format, code, JSON, items)."""
    text = last_user_text(body.get("messages") or [])
    system = " ".join(m.get("content", "") for m in body.get("messages") or []
                      if isinstance(m, dict) and m.get("role") == "system" and isinstance(m.get("content"), str))
    hay = f"{system}\n{text}"
    rf = body.get("response_format")
    strict = isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema")
    wants_json = strict or bool(_ASK_JSON_ONLY.search(hay))
    lang_m = _ASK_LANG.search(hay)
    wants_code = bool(_ASK_CODE.search(text))
    n = _ASK_N.search(text)
    items = None
    if n:
        raw = n.group(1) or n.group(3) or n.group(4)
        items = int(raw) if raw.isdigit() else _WORD_N.get(raw.lower())
    return Expectations(
        json=wants_json, json_strict=strict,
        code=wants_code and not wants_json,
        code_lang=_LANGS.get(lang_m.group(1).lower()) if lang_m and wants_code else None,
        code_block=bool(_ASK_BLOCK.search(text)),
        list_=(bool(_ASK_LIST.search(text)) or items is not None) and not wants_code,
        items=items if items and 1 < items <= 50 else None,
        tools=bool(body.get("tools") or body.get("functions")),
        capped=bool(body.get("max_tokens") or body.get("max_completion_tokens")),
        prompt=_norm(text[:2000]),
    )


# --- what was answered --------------------------------------------------------------

_REFUSAL = LazyPattern(
    r"^\W*(?:i'?m sorry,?\s*(?:but\s*)?)?(?:i\s+(?:can(?:no|')t|am unable to|'m unable to|won'?t|am not able to|'m not able to)"
    r"\s+(?:help|assist|provide|do|comply|answer|fulfil)|as an ai\b)"
    r"|申し訳(?:ありません|ございません)が.{0,40}(?:できません|いたしかねます|できかねます)"
    r"|(?:お答え|回答|お手伝い|対応)(?:することは)?できません",
    re.I | re.S,
)
_HEDGES = LazyPattern(
    r"\b(?:i'?m not (?:sure|certain)|i am not (?:sure|certain)|i don'?t know|i do not know|not 100% sure|"
    r"i might be wrong|i could be wrong|it'?s hard to say|hard to tell|i can'?t be (?:sure|certain)|"
    r"i'?m not confident|i am not confident|i think maybe|i'?m guessing|just a guess)\b"
    r"|わかりません|分かりません|自信がありません|確かではありません|定かではありません|はっきりしません|不明です|推測ですが",
    re.I,
)
_FENCE = LazyPattern(r"```([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_LIST_ITEM = LazyPattern(r"^\s*(?:\d{1,3}[.)、]|[-*•・+]|[①-⑳])\s*\S", re.M)
_CODE_SHAPE = LazyPattern(r"^\s*(?:def |class |import |from \S+ import|function |const |let |var |public |#include|fn |"
                         r"func |SELECT |return\b)", re.M | re.I)


def answer_text(response: Mapping[str, Any]) -> tuple[str, str | None, bool, bool]:
    """(content, finish_reason, has_tool_calls, refused) of a chat.completion's first choice."""
    choices = response.get("choices") or []
    if not choices:
        return "", None, False, False
    ch = choices[0]
    msg = ch.get("message") or {}
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content or "", ch.get("finish_reason"), bool(msg.get("tool_calls")), bool(msg.get("refusal"))


def score_response(exp: Expectations, response: Mapping[str, Any]) -> Score:
    """Score a chat.completion dict (its first choice)."""
    text, finish, tool_calls, refused = answer_text(response)
    return score_text(exp, text, finish_reason=finish, tool_calls=tool_calls, refused=refused)


def score_text(exp: Expectations, text: str, *, finish_reason: str | None = None,
               tool_calls: bool = False, refused: bool = False) -> Score:
    """The deterministic checks. Pure; well under a millisecond for ordinary answers."""
    reasons: list[str] = []
    cap = 1.0
    mult = 1.0
    if finish_reason == "length" and exp.capped:
        reasons.append("stopped_at_max_tokens")
    elif finish_reason == "length":
        reasons.append("truncated")
        cap = min(cap, 0.3)
    stripped = text.strip()
    if not stripped:
        if tool_calls and finish_reason != "length":
            return Score(1.0, ("tool_calls",))
        return Score(0.0, (*reasons, "empty"))
    degenerate = _degenerate(stripped, exp.prompt)
    if degenerate:
        # A loop or an echo of the question is worthless whatever stopped it (the client's
        # max_tokens included): a hard failure.
        reasons.append(degenerate)
        cap = min(cap, 0.1)
    if refused or _REFUSAL.search(stripped[:300]):
        reasons.append("refusal")
        cap = min(cap, 0.1)
    if exp.json:
        ok = _json_ok(stripped, strict=exp.json_strict)
        if not ok:
            reasons.append("invalid_json")
            cap = min(cap, 0.1)
    if exp.code:
        why = _code_problem(stripped, exp.code_lang)
        if why:
            reasons.append(why)
            cap = min(cap, 0.2 if why.startswith("code_syntax") else 0.4)
    if exp.code_block and "```" not in stripped:
        reasons.append("format:no_code_block")
        cap = min(cap, 0.5)
    if exp.list_ and not exp.json:
        n = len(_LIST_ITEM.findall(stripped))
        if n == 0:
            reasons.append("format:no_list")
            mult *= 0.6
        elif exp.items and n < exp.items:
            reasons.append(f"format:items={n}/{exp.items}")
            mult *= 0.6
    hedges = _HEDGES.findall(stripped)
    if hedges:
        reasons.append("hedging:" + ",".join(sorted({h.lower() for h in hedges})[:3]))
        mult *= 0.6 if len(hedges) == 1 else 0.4  # one hedge alone fails the default 0.7 threshold
    value = min(cap, 1.0) * mult
    return Score(round(value, 4), tuple(reasons) or ("ok",))


_WS = LazyPattern(r"\s+")
_TOKEN = LazyPattern(r"\w+", re.U)  # words only: tables and lists repeat their punctuation


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip().lower()


def _degenerate(text: str, prompt: str) -> str | None:
    """``degenerate:prompt_echo`` when the answer repeats the question back (twice, or as most
    of itself); ``degenerate:repetition`` when a short span loops (few distinct 4-grams)."""
    norm = _norm(text)
    if len(prompt) >= 12 and prompt in norm:
        if norm.count(prompt) >= 2 or len(prompt) >= 0.8 * len(norm):
            return "degenerate:prompt_echo"
    words = _TOKEN.findall(norm[:20000])
    if len(words) >= 24:
        grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
        if len(set(grams)) / len(grams) < 0.35:
            return "degenerate:repetition"
    return None


def _json_ok(text: str, *, strict: bool) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        pass
    if strict:
        return False
    # Asked in prose: a fenced JSON block counts.
    for _, body in _FENCE.findall(text):
        try:
            json.loads(body)
            return True
        except ValueError:
            continue
    return False


def _code_problem(text: str, lang: str | None) -> str | None:
    blocks = [(_LANGS.get(tag.lower(), tag.lower() or None), body) for tag, body in _FENCE.findall(text)]
    if not blocks:
        if not _CODE_SHAPE.search(text):
            return "format:no_code"
        blocks = [(lang, text)]
    for tag, body in blocks:
        language = tag or lang
        if language == "python":
            try:
                ast.parse(body)
            except (SyntaxError, ValueError):
                return "code_syntax:python"
        elif not _balanced(body):
            return f"code_syntax:{language or 'unknown'}:unbalanced"
    return None


_PAIRS = {")": "(", "]": "[", "}": "{"}


def _balanced(code: str) -> bool:
    """Brackets balance outside string literals and line comments (a heuristic for non-Python code)."""
    stack: list[str] = []
    quote: str | None = None
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote or c == "\n" and quote != "`":
                quote = None
        elif c in "\"'`":
            quote = c
        elif c == "/" and code.startswith("//", i) or c == "#" and (i == 0 or code[i - 1] == "\n"):
            j = code.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c in "([{":
            stack.append(c)
        elif c in _PAIRS and (not stack or stack.pop() != _PAIRS[c]):
            return False
        i += 1
    return not stack


# --- the judge -----------------------------------------------------------------------

_NUMBER = LazyPattern(r"(?<![\d.])(10(?:\.0+)?|\d(?:\.\d+)?)(?:\s*/\s*10)?(?![\d.])")


def parse_judge(text: str) -> float | None:
    """The first 0-10 number in a judge's reply, or None."""
    m = _NUMBER.search(text or "")
    return float(m.group(1)) if m else None


def blend_judge(score: Score, verdict: float | None, weight: float) -> Score:
    """Blend a judge's 0-10 verdict into a deterministic score (unparseable verdicts are ignored)."""
    if verdict is None:
        return Score(score.value, (*score.reasons, "judge:unparseable"), None)
    value = (1 - weight) * score.value + weight * verdict / 10
    return Score(round(min(value, score.value if score.value < HARD_FAILURE else 1.0), 4),
                 (*score.reasons, f"judge:{verdict:g}/10"), verdict)
