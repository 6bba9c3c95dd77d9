"""Cascade policies as catalog data (the ``cascades:`` section; issue 5).

A policy names an ordered list of steps (tiers, or explicit model names), how they are
used (``mode``), when an answer is good enough (a score threshold per task type), a cost
ceiling for the whole cascade, and optionally a judge model. The in-process engine
(:mod:`tiergate.cascade.engine`) and the Step Functions definition
(:mod:`tiergate.cascade.definition`) are both generated from this one object.

.. code-block:: yaml

    cascades:
      default:
        mode: escalate
        tiers: [0, 1, 2, 3]
        threshold: 0.7
        thresholds: {coding: 0.8}
        max_cost_usd: 0.05
        judge: {model: "tier:2", task_types: [analysis]}
      code-review:
        mode: refine
        models: [qwen-coder, claude-sonnet]
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from tiergate.config.base import Strict, TaskType, Tier

Mode = Literal["escalate", "refine", "parallel"]

DEFAULT_REFINE_PROMPT = (
    "A first draft answer to the user's last request follows. Improve it: fix mistakes, complete what is "
    "missing, and keep the format the user asked for. Reply with the improved answer only.\n\n"
    "--- draft ---\n{draft}\n--- end of draft ---"
)

DEFAULT_JUDGE_PROMPT = (
    "Rate how well the ANSWER responds to the REQUEST on a scale from 0 (useless or wrong) to 10 "
    "(complete and correct). Reply with the number only.\n\nREQUEST:\n{request}\n\nANSWER:\n{answer}"
)


class JudgeConfig(Strict):
    """A model that scores an answer 0-10; its verdict is blended with the deterministic score."""

    #: A model name or ``tier:N``.
    model: str = Field(min_length=1)
    #: Task types for which the judge runs (empty: every task type).
    task_types: frozenset[TaskType] = frozenset()
    #: Weight of the judge in the final score: ``(1 - w) * deterministic + w * judge / 10``.
    weight: float = Field(0.5, ge=0, le=1)
    prompt: str = DEFAULT_JUDGE_PROMPT
    max_tokens: int = Field(8, gt=0, le=64)

    def enabled_for(self, task_type: str | None) -> bool:
        return not self.task_types or task_type in self.task_types


class CascadePolicy(Strict):
    mode: Mode = "escalate"
    #: Steps as tiers, cheapest first. Ignored when ``models`` is set.
    tiers: list[Tier] = Field(default_factory=lambda: [0, 1, 2, 3], min_length=1)
    #: Steps as explicit model names (or ``tier:N``), in order. Overrides ``tiers``.
    models: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    #: Acceptance threshold on the [0, 1] score, and per-task-type overrides.
    threshold: float = Field(0.7, ge=0, le=1)
    thresholds: dict[TaskType, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    #: Most the whole cascade may spend; a step whose estimate would cross it is not started.
    max_cost_usd: float | None = Field(None, gt=0)
    #: Output tokens assumed for a step's cost estimate when the request sets no max_tokens.
    estimate_output_tokens: int = Field(1024, gt=0)
    judge: JudgeConfig | None = None
    #: refine mode: the instruction given to the stronger step; ``{draft}`` is the previous answer.
    refine_prompt: str = DEFAULT_REFINE_PROMPT
    #: refine mode: improve the draft even when it already clears the threshold.
    refine_always: bool = True
    #: parallel mode: how many steps to fan out to at once (default: all of them).
    fan_out: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> CascadePolicy:
        if "{draft}" not in self.refine_prompt:
            raise ValueError("refine_prompt must contain '{draft}'")
        if self.judge and not {"{request}", "{answer}"} <= _placeholders(self.judge.prompt):
            raise ValueError("judge.prompt must contain '{request}' and '{answer}'")
        if self.mode == "refine" and len(self.targets()) < 2:
            raise ValueError("refine mode needs at least two steps (a drafter and an improver)")
        return self

    def targets(self) -> tuple[str, ...]:
        """The steps in order, each a model name or ``tier:N`` (what the router resolves)."""
        if self.models:
            return tuple(self.models)
        return tuple(f"tier:{t}" for t in self.tiers)

    def threshold_for(self, task_type: str | None) -> float:
        return self.thresholds.get(task_type, self.threshold) if task_type else self.threshold  # type: ignore[call-overload]

    def judge_for(self, task_type: str | None) -> JudgeConfig | None:
        return self.judge if self.judge and self.judge.enabled_for(task_type) else None


def _placeholders(template: str) -> set[str]:
    return {p for p in ("{request}", "{answer}", "{draft}") if p in template}
