"""The training data contract (JSON Lines), read and checked in one place: pure Python.

One prompt per line::

    {"messages": [{"role": "user", "content": "..."}],      # or "prompt": "..."
     "outcomes": {"<catalog model name>": 1.0, ...},         # quality of each answer, 0..1
     "answers":  {"<catalog model name>": "answer text"}}    # optional (trains the scorer)

Other fields (``id``, ``category``, ``task_type``, ``label_source``...) are allowed and
ignored. ``tiergate router export`` writes this shape; ``tiergate router train`` reads it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A training file is unreadable or a line breaks the contract; the message says where."""


@dataclass(frozen=True, slots=True)
class Example:
    messages: list[dict[str, Any]]
    outcomes: dict[str, float]
    answers: dict[str, str] = field(default_factory=dict)
    where: str = ""


def _messages(row: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m for m in msgs):
            raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
        return msgs
    prompt = row.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return [{"role": "user", "content": prompt}]
    raise DataError(f"{where}: needs 'messages' (a list) or 'prompt' (a string)")


def parse_line(line: str, where: str) -> Example | None:
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except ValueError as e:
        raise DataError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object")
    msgs = _messages(row, where)
    outcomes = row.get("outcomes")
    if not isinstance(outcomes, dict) or not outcomes:
        raise DataError(f"{where}: 'outcomes' must map model names to a quality in [0, 1]")
    clean: dict[str, float] = {}
    for m, q in outcomes.items():
        if isinstance(q, bool) or not isinstance(q, int | float) or not 0.0 <= float(q) <= 1.0:
            raise DataError(f"{where}: outcomes[{m!r}] = {q!r} is not a number in [0, 1]")
        clean[str(m)] = float(q)
    answers = row.get("answers") or {}
    if not isinstance(answers, dict) or not all(isinstance(v, str) for v in answers.values()):
        raise DataError(f"{where}: 'answers' must map model names to answer text")
    return Example(msgs, clean, {str(k): v for k, v in answers.items()}, where)


def read(paths: Sequence[Path]) -> tuple[list[Example], str]:
    """Every example of every file, and the sha256 of the files' bytes (in order)."""
    out: list[Example] = []
    h = hashlib.sha256()
    for p in paths:
        try:
            raw = Path(p).read_bytes()
        except OSError as e:
            raise DataError(f"cannot read {p}: {e.strerror}") from None
        h.update(raw)
        for i, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
            ex = parse_line(line, f"{p}:{i}")
            if ex is not None:
                out.append(ex)
    if not out:
        raise DataError("no training examples in " + ", ".join(map(str, paths)))
    return out, h.hexdigest()


def check_models(examples: Iterable[Example], catalog_models: Iterable[str]) -> list[str]:
    """The outcome models in catalog order of first appearance; raises :class:`DataError`
    naming every outcome key that is not a model of the catalog."""
    known = set(catalog_models)
    seen: dict[str, int] = {}
    for ex in examples:
        for m in ex.outcomes:
            seen[m] = seen.get(m, 0) + 1
    unknown = sorted(m for m in seen if m not in known)
    if unknown:
        raise DataError(f"outcome keys not in the catalog: {', '.join(unknown)} "
                        f"(catalog models: {', '.join(sorted(known))})")
    if len(seen) < 2:
        raise DataError(f"the data has outcomes for {len(seen)} model(s); a router needs two or more")
    return sorted(seen)
