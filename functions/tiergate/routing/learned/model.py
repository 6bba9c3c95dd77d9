"""The learned router's and scorer's models at serving time: pure Python, no numpy.

A :class:`LinearModel` is a logistic regression per output over idf-weighted,
L2-normalized binary features (:mod:`tiergate.routing.learned.features`): one dict
lookup per feature, then a C-speed ``sum(map(...))`` per output. A :class:`Curve` maps a
quality target to the operating point (router margin, scorer threshold) that reached it
on held-out training data. :func:`choose` is THE routing rule; training calibrates with
the same function, so what was measured is what serves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Below this the margin means "always the reference model" (no learned choice).
ALWAYS_REFERENCE = -1.0
#: Output name prefix of the relative form: ``gain:<model>`` predicts (y_ref - y_m + 1) / 2.
GAIN = "gain:"


def relative_quality(q_ref: Any, gain: Any) -> Any:
    """A model's quality from the reference's and its learned shortfall (floats or arrays)."""
    return q_ref - (2 * gain - 1)


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class LinearModel:
    """Logistic outputs over a shared vocabulary; weights are pre-multiplied by idf."""

    __slots__ = ("names", "_index", "_idf2", "_bias", "_w")

    def __init__(self, vocab: Sequence[str], idf: Sequence[float], outputs: Mapping[str, tuple[float, Sequence[float]]]
                 ) -> None:
        n = len(vocab)
        if len(idf) != n or any(len(w) != n for _, w in outputs.values()):
            raise ValueError("vocabulary, idf and weights differ in length")
        self.names: tuple[str, ...] = tuple(outputs)
        self._index = {f: i for i, f in enumerate(vocab)}
        self._idf2 = [x * x for x in idf]
        self._bias = [float(b) for b, _ in outputs.values()]
        self._w = [[float(x) * float(v) for x, v in zip(idf, w, strict=True)] for _, w in outputs.values()]

    @property
    def size(self) -> int:
        return len(self._index)

    def indices(self, features: Iterable[str]) -> list[int]:
        get = self._index.get
        return [i for i in map(get, features) if i is not None]

    def predict(self, features: Iterable[str]) -> dict[str, float]:
        """Each output's probability for these features."""
        idx = self.indices(features)
        norm = math.sqrt(sum(map(self._idf2.__getitem__, idx))) or 1.0
        return {name: sigmoid(b + sum(map(w.__getitem__, idx)) / norm)
                for name, b, w in zip(self.names, self._bias, self._w, strict=True)}


@dataclass(frozen=True, slots=True)
class Curve:
    """Calibration: ``points`` are (target, value) pairs, ascending by target, where value
    is the operating point that reached ``target`` on held-out data. A request's target
    takes the point of the smallest calibrated target at or above it (conservative)."""

    points: tuple[tuple[float, float], ...]

    def value(self, target: float) -> float | None:
        for t, v in self.points:
            if t >= target - 1e-9:
                return v
        return None

    @property
    def max_target(self) -> float:
        return self.points[-1][0] if self.points else 0.0


def choose(predicted: Mapping[str, float], costs: Mapping[str, float], margin: float,
           reference: str | None = None) -> str:
    """THE routing rule: the cheapest model whose predicted quality is within ``margin`` of
    the best prediction (a negative margin: the reference model, the best on average)."""
    if margin <= ALWAYS_REFERENCE + 1e-9 or margin < 0:
        if reference in predicted:
            return reference  # type: ignore[return-value]
        margin = 0.0
    best = max(predicted.values())
    ok = [m for m, q in predicted.items() if q >= best - margin - 1e-12]
    return min(ok, key=lambda m: (costs.get(m, 0.0), -predicted[m], m))


def cascade_pick(scores: Sequence[float], threshold: float) -> tuple[int, int]:
    """THE cascade rule on scored steps in cost order, as the engine runs it: the first
    step whose score reaches ``threshold``; when none does, every step ran and the
    best-scored answer is returned. Returns (answer index, steps run)."""
    for i, s in enumerate(scores):
        if s >= threshold:
            return i, i + 1
    return max(range(len(scores)), key=lambda i: scores[i]), len(scores)
