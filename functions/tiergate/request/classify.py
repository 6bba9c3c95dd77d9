"""Task classification for ``auto`` routing: which kind of task, how hard.

Keyword signals in English and Japanese, plus structure (code fences, length, number of
questions/requirements). Pure and fast (a few microseconds per prompt): it runs on every
``auto`` request. The catalog may add keywords per task type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Difficulty = Literal["easy", "medium", "hard"]

# Order matters for ties: the more demanding task wins.
_KEYWORDS: dict[str, tuple[str, ...]] = {
    "realtime": (
        "latest news", "today's", "right now", "current price", "stock price", "weather", "real-time", "realtime",
        "最新", "今日の", "現在の", "リアルタイム", "天気", "株価",
    ),
    "premium": (
        "critical", "mission-critical", "strategy", "strategic", "legal advice", "contract review", "board",
        "high-stakes", "compliance", "medical", "diagnos", "investment decision", "security audit",
        "重要な", "戦略", "経営", "法的", "契約書", "医療", "診断", "投資判断", "監査",
    ),
    "analysis": (
        "analyze", "analyse", "analysis", "compare", "trade-off", "tradeoff", "evaluate", "reason", "explain why",
        "design", "architecture", "pros and cons", "root cause", "plan", "summarize the differences", "assess",
        "分析", "比較", "評価", "設計", "方針", "推論", "理由", "検討", "考察", "要因",
    ),
    "coding": (
        "code", "function", "implement", "bug", "debug", "refactor", "compile", "stack trace", "exception",
        "python", "javascript", "typescript", "java ", "golang", "rust", "sql", "regex", "unit test", "api endpoint",
        "class ", "def ", "script", "algorithm",
        "コード", "関数", "実装", "バグ", "デバッグ", "リファクタ", "プログラム", "スクリプト", "テスト",
    ),
}
_ORDER = ("realtime", "premium", "analysis", "coding")
_CODE_FENCE = re.compile(r"```|^\s{4}\S", re.M)
_CODE_SHAPE = re.compile(r"\b(def|class|function|import|return|const|let|var|public|#include)\b|[{};]\s*$", re.M)
_HARD = ("step by step", "prove", "rigorous", "in depth", "comprehensive", "detailed", "optimize",
         "詳細", "徹底", "証明", "網羅", "最適化")


@dataclass(frozen=True, slots=True)
class TaskProfile:
    task_type: str
    difficulty: Difficulty
    signals: tuple[str, ...] = ()


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return " ".join(str(p.get("text", "")) for p in c if isinstance(p, dict) and p.get("type") == "text")
    return ""


def classify(messages: Sequence[Mapping[str, Any]], extra_keywords: Mapping[str, Sequence[str]] | None = None,
             *, hint: str | None = None) -> TaskProfile:
    """Classify the conversation by its last user turn (plus the system prompt's signals).

    ``hint`` (a task type the client asserted, e.g. ``/generate``'s ``task_type``) wins
    over keywords, but difficulty is still measured.
    """
    text = last_user_text(messages)
    system = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "system"
                      and isinstance(m.get("content"), str))
    hay = f"{system}\n{text}".lower()
    scores: dict[str, int] = {}
    signals: list[str] = []
    for task in _ORDER:
        words = _KEYWORDS[task] + tuple((extra_keywords or {}).get(task, ()))
        hits = [w for w in words if w.lower() in hay]
        if hits:
            scores[task] = len(hits)
            signals.extend(f"{task}:{w.strip()}" for w in hits[:3])
    if _CODE_FENCE.search(text) or len(_CODE_SHAPE.findall(text)) >= 2:
        scores["coding"] = scores.get("coding", 0) + 2
        signals.append("coding:code-shape")
    if hint and hint != "auto":
        task_type = hint
        signals.insert(0, f"hint:{hint}")
    elif scores:
        best = max(scores.values())
        task_type = next(t for t in _ORDER if scores.get(t) == best)
    else:
        task_type = "general"
    return TaskProfile(task_type, _difficulty(text, hay), tuple(signals))


def _difficulty(text: str, hay: str) -> Difficulty:
    n = len(text)
    points = 0
    points += 2 if n > 4000 else 1 if n > 800 else 0
    points += sum(1 for w in _HARD if w in hay)
    points += 1 if text.count("?") + text.count("？") >= 3 else 0
    points += 1 if len(re.findall(r"^\s*(?:\d+[.)]|[-*•])\s", text, re.M)) >= 4 else 0
    return "hard" if points >= 3 else "medium" if points >= 1 else "easy"
