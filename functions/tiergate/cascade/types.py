"""The cascade's vocabulary: a step to run, its answer, the record of what happened, and
the port through which a step reaches the outside world (models and budgets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tiergate.cascade import scoring

Purpose = Literal["answer", "refine", "judge"]


@dataclass(frozen=True, slots=True)
class StepRequest:
    index: int
    target: str          # a model name or "tier:N"
    body: dict[str, Any]
    purpose: Purpose = "answer"


@dataclass(frozen=True, slots=True)
class StepAnswer:
    response: dict[str, Any]
    model: str
    tier: int | None
    cost_usd: float
    latency_ms: float
    attempts: int = 1
    #: The deployment used (a ModelSpec in the gateway; opaque here).
    deployment: Any = None


@dataclass(slots=True)
class StepRecord:
    index: int
    purpose: Purpose
    target: str
    status: str          # accepted | rejected | draft | error | cancelled | skipped:budget | skipped:ceiling
    tier: int | None = None
    model: str | None = None
    score: float | None = None
    reasons: tuple[str, ...] = ()
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "purpose": self.purpose, "target": self.target, "status": self.status,
                "tier": self.tier, "model": self.model, "score": self.score, "reasons": list(self.reasons),
                "cost_usd": round(self.cost_usd, 8), "latency_ms": round(self.latency_ms, 1), "error": self.error}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepRecord:
        return cls(**{**d, "reasons": tuple(d.get("reasons") or ())})


@dataclass(frozen=True, slots=True)
class Decision:
    action: Literal["accept", "escalate", "stop"]
    reason: str
    next_index: int | None = None
    next_target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "next_index": self.next_index,
                "next_target": self.next_target}


@dataclass(slots=True)
class CascadeOutcome:
    mode: str
    answer: StepAnswer | None
    score: scoring.Score | None
    steps: list[StepRecord] = field(default_factory=list)
    stop_reason: str = ""

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.steps)


class BudgetGuard(Protocol):
    """Reserve before a step, settle after it (exactly once, also on failure or cancel)."""

    def estimate(self, step: StepRequest) -> float: ...

    async def admit(self, step: StepRequest) -> Any: ...

    async def settle(self, lease: Any, answer: StepAnswer | None, error: BaseException | None) -> None: ...


class Port(BudgetGuard, Protocol):
    """Everything a cascade step needs from outside: the budget guard, one model call per
    step (``answer``, raising :mod:`tiergate.errors` classes when every deployment failed),
    and the tier a target names (for tier ceilings). A lease with a ``max_tier`` attribute
    (soft budget limit) lowers the cascade's ceiling for the remaining steps."""

    def tier_of(self, target: str) -> int | None: ...

    async def answer(self, step: StepRequest, lease: Any) -> StepAnswer: ...


class NoBudget:
    """No budget machinery: every step is admitted, estimates are zero."""

    def estimate(self, step: StepRequest) -> float:
        return 0.0

    async def admit(self, step: StepRequest) -> None:
        return None

    async def settle(self, lease: Any, answer: StepAnswer | None, error: BaseException | None) -> None:
        return None


def tier_of_target(target: str) -> int | None:
    return int(target[5:]) if target.startswith("tier:") and target[5:].isdigit() else None
