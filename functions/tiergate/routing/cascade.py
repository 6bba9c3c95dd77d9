"""The cascade engine: answer cheap, score, pay for a stronger model only when needed (issue 5).

Pure logic over injected callables, shared by the in-process path
(:mod:`tiergate.routing.cascade_runner` binds it to the Router, Executor and Admission),
the edge, and the Step Functions task handler (:mod:`tiergate.handlers.cascade`), which
runs the same :func:`decide` and the same scorer one step per Lambda invocation.

Injected:

* ``answer(step, lease) -> StepAnswer``: one model call for one step (a tier or a model),
  raising :mod:`tiergate.errors` classes when every deployment failed;
* a :class:`BudgetGuard`: ``estimate`` a step's worst-case cost, ``admit`` it (raising
  :class:`~tiergate.errors.BudgetExceeded` when the budget cannot cover it: the step is
  not started and the cascade returns its best answer so far), ``settle`` it exactly once
  (also when it failed or was cancelled). A lease with ``max_tier`` (soft limit) lowers
  the cascade's ceiling for the remaining steps.

Modes: ``escalate`` (cheapest first; accept at the threshold; stop at the top or the cost
ceiling; return the best-scored), ``refine`` (a cheap draft, improved by stronger steps),
``parallel`` (fan out; first acceptable answer wins and the rest are cancelled, else the
best-scored when all finish).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tiergate.errors import BudgetExceeded, GatewayError
from tiergate.routing import scoring
from tiergate.routing.classify import last_user_text
from tiergate.routing.policy import CascadePolicy

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
    #: The deployment used (a ModelSpec in the runner; opaque here).
    deployment: Any = None


@dataclass(slots=True)
class StepRecord:
    index: int
    purpose: Purpose
    target: str
    status: str          # accepted | rejected | error | cancelled | skipped:budget | skipped:ceiling
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
    def estimate(self, step: StepRequest) -> float: ...

    async def admit(self, step: StepRequest) -> Any: ...

    async def settle(self, lease: Any, answer: StepAnswer | None, error: BaseException | None) -> None: ...


class NoBudget:
    """No budget machinery: every step is admitted, estimates are zero."""

    def estimate(self, step: StepRequest) -> float:
        return 0.0

    async def admit(self, step: StepRequest) -> None:
        return None

    async def settle(self, lease: Any, answer: StepAnswer | None, error: BaseException | None) -> None:
        return None


AnswerFn = Callable[[StepRequest, Any], Awaitable[StepAnswer]]


def tier_of_target(target: str) -> int | None:
    return int(target[5:]) if target.startswith("tier:") and target[5:].isdigit() else None


def decide(policy: CascadePolicy, *, task_type: str | None, score: float, index: int,
           targets: Sequence[str], spent_usd: float = 0.0, next_estimate_usd: float | None = None) -> Decision:
    """Accept the answer of step ``index``, escalate to the next step, or stop.

    The one decision function: the engine, the Step Functions ``Score`` task and the
    ``POST /v1/route`` dry run all call it.
    """
    threshold = policy.threshold_for(task_type)
    if score >= threshold:
        return Decision("accept", f"score {score:.2f} >= threshold {threshold:.2f}")
    nxt = index + 1
    if nxt >= len(targets):
        return Decision("stop", f"score {score:.2f} < {threshold:.2f} and no stronger step left")
    ceiling = policy.max_cost_usd
    if ceiling is not None and next_estimate_usd is not None and spent_usd + next_estimate_usd > ceiling:
        return Decision("stop", f"score {score:.2f} < {threshold:.2f} but {targets[nxt]} (~${next_estimate_usd:.6f}) "
                                f"would pass the ${ceiling:g} ceiling (spent ${spent_usd:.6f})")
    return Decision("escalate", f"score {score:.2f} < threshold {threshold:.2f}", nxt, targets[nxt])


def capped_targets(policy: CascadePolicy, max_tier: int | None,
                   tier_of: Callable[[str], int | None] = tier_of_target) -> tuple[str, ...]:
    """The policy's steps under a tier ceiling (soft budget limit); never empty."""
    targets = policy.targets()
    if max_tier is None:
        return targets
    kept = tuple(t for t in targets if (tier_of(t) or 0) <= max_tier)
    return kept or targets[:1]


def refine_body(policy: CascadePolicy, body: Mapping[str, Any], draft: str) -> dict[str, Any]:
    messages = list(body.get("messages") or [])
    return {**body, "messages": [*messages, {"role": "user", "content": policy.refine_prompt.format(draft=draft)}]}


def judge_body(policy: CascadePolicy, body: Mapping[str, Any], answer: str) -> dict[str, Any]:
    assert policy.judge is not None
    prompt = policy.judge.prompt.format(request=last_user_text(body.get("messages") or []), answer=answer)
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": policy.judge.max_tokens,
            "temperature": 0}


class CascadeEngine:
    def __init__(self, policy: CascadePolicy, answer: AnswerFn, *, guard: BudgetGuard | None = None,
                 tier_of: Callable[[str], int | None] = tier_of_target) -> None:
        self.policy = policy
        self._answer = answer
        self._guard = guard or NoBudget()
        self._tier_of = tier_of

    async def run(self, body: Mapping[str, Any], *, task_type: str | None = None,
                  max_tier: int | None = None) -> CascadeOutcome:
        """Run the policy for one request. Raises the last error when no step produced an answer."""
        run = _Run(self, dict(body), task_type, capped_targets(self.policy, max_tier, self._tier_of))
        mode = self.policy.mode
        if mode == "parallel":
            await run.parallel()
        elif mode == "refine":
            await run.refine()
        else:
            await run.escalate()
        return run.outcome()


class _Run:
    """The state of one cascade run (steps so far, best answer, spend)."""

    def __init__(self, engine: CascadeEngine, body: dict[str, Any], task_type: str | None,
                 targets: tuple[str, ...]) -> None:
        self.e = engine
        self.policy = engine.policy
        self.body = body
        self.task_type = task_type
        self.targets = targets
        self.exp = scoring.expectations(body)
        self.steps: list[StepRecord] = []
        self.best: tuple[StepAnswer, scoring.Score] | None = None
        self.accepted = False
        self.stop_reason = ""
        self.last_error: BaseException | None = None

    @property
    def spent(self) -> float:
        return sum(s.cost_usd for s in self.steps)

    # --- modes --------------------------------------------------------------------------

    async def escalate(self) -> None:
        i = 0
        while i < len(self.targets):
            got = await self._scored_step(StepRequest(i, self.targets[i], self.body))
            if got is None and self.stop_reason:
                return
            score = got[1].value if got else 0.0
            if not await self._decide_next(i, score, self.body):
                return
            i += 1

    async def refine(self) -> None:
        first = await self._scored_step(StepRequest(0, self.targets[0], self.body))
        if first is None and self.stop_reason:
            return
        if self.accepted and not self.policy.refine_always:
            return
        if self.accepted:  # a draft is improved even when it clears the threshold
            self.accepted, self.stop_reason = False, ""
            self.steps[0].status = "draft"
        i = 0
        while (i := i + 1) < len(self.targets):  # the targets may shrink (soft budget limit)
            if self.best is None:  # the drafter failed: the next step answers from scratch
                body, purpose = self.body, "answer"
            else:
                draft = scoring.answer_text(self.best[0].response)[0]
                body, purpose = refine_body(self.policy, self.body, draft), "refine"
            if not await self._within_ceiling(StepRequest(i, self.targets[i], body, purpose)):
                return
            got = await self._scored_step(StepRequest(i, self.targets[i], body, purpose))  # type: ignore[arg-type]
            if got is None and self.stop_reason:
                return
            if self.accepted:
                return
        self.stop_reason = self.stop_reason or "no stronger step left"

    async def parallel(self) -> None:
        fan = self.targets[: self.policy.fan_out or len(self.targets)]
        steps = [StepRequest(i, t, self.body) for i, t in enumerate(fan)]
        if self.policy.max_cost_usd is not None:  # drop the priciest until the fan-out fits the ceiling
            while len(steps) > 1 and sum(self.e._guard.estimate(s) for s in steps) > self.policy.max_cost_usd:
                dropped = max(steps, key=self.e._guard.estimate)
                steps.remove(dropped)
                self.steps.append(StepRecord(dropped.index, "answer", dropped.target, "skipped:ceiling"))
        tasks = {asyncio.ensure_future(self._scored_step(s)): s for s in steps}
        pending = set(tasks)
        try:
            while pending and not self.accepted:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self.stop_reason = self.stop_reason or ("accepted" if self.accepted else "all steps finished")

    # --- one step -----------------------------------------------------------------------

    async def _decide_next(self, i: int, score: float, body: Mapping[str, Any]) -> bool:
        """After step ``i``: True to go on with step ``i + 1``."""
        if self.accepted:
            return False
        nxt = StepRequest(i + 1, self.targets[i + 1], body) if i + 1 < len(self.targets) else None
        d = decide(self.policy, task_type=self.task_type, score=score, index=i, targets=self.targets,
                   spent_usd=self.spent, next_estimate_usd=self.e._guard.estimate(nxt) if nxt else None)
        if d.action == "stop":
            self.stop_reason = d.reason
            if nxt and "ceiling" in d.reason:
                self.steps.append(StepRecord(nxt.index, "answer", nxt.target, "skipped:ceiling"))
        return d.action == "escalate"

    async def _within_ceiling(self, step: StepRequest) -> bool:
        ceiling = self.policy.max_cost_usd
        if ceiling is None or self.spent + self.e._guard.estimate(step) <= ceiling:
            return True
        self.steps.append(StepRecord(step.index, step.purpose, step.target, "skipped:ceiling"))
        self.stop_reason = f"{step.target} would pass the ${ceiling:g} ceiling"
        return False

    async def _scored_step(self, step: StepRequest) -> tuple[StepAnswer, scoring.Score] | None:
        """Answer and score one step; record it. None when it failed or was not admitted."""
        rec = StepRecord(step.index, step.purpose, step.target, "error", tier=self.e._tier_of(step.target))
        self.steps.append(rec)
        try:
            ans = await self._call(step)
        except BudgetExceeded as e:
            rec.status, rec.error = "skipped:budget", e.message
            self.stop_reason = f"budget cannot cover {step.target}"
            self.last_error = e
            return None
        except asyncio.CancelledError:
            rec.status = "cancelled"
            raise
        except GatewayError as e:
            rec.error = f"{type(e).__name__}: {e.message}"
            self.last_error = e
            return None
        rec.model, rec.tier, rec.latency_ms = ans.model, ans.tier, ans.latency_ms
        rec.cost_usd += ans.cost_usd
        score = await self._score(step, ans, rec)
        rec.score, rec.reasons = score.value, score.reasons
        threshold = self.policy.threshold_for(self.task_type)
        rec.status = "accepted" if score.value >= threshold and not self.accepted else "rejected"
        if self.best is None or score.value > self.best[1].value or rec.status == "accepted":
            self.best = (ans, score)
        if rec.status == "accepted":
            self.accepted = True
            self.stop_reason = "accepted"
        return ans, score

    async def _call(self, step: StepRequest) -> StepAnswer:
        """admit -> answer -> settle (settled exactly once, also on failure or cancellation)."""
        guard = self.e._guard
        lease = await guard.admit(step)
        max_tier = getattr(lease, "max_tier", None)
        if max_tier is not None:  # soft limit: no later step above this tier
            head, tail = self.targets[: step.index + 1], self.targets[step.index + 1:]
            self.targets = head + tuple(t for t in tail if (self.e._tier_of(t) or 0) <= max_tier)
        try:
            ans = await self.e._answer(step, lease)
        except BaseException as e:
            await asyncio.shield(guard.settle(lease, None, e))
            raise
        await guard.settle(lease, ans, None)
        return ans

    async def _score(self, step: StepRequest, ans: StepAnswer, rec: StepRecord) -> scoring.Score:
        score = scoring.score_response(self.exp, ans.response)
        judge = self.policy.judge_for(self.task_type)
        if judge is None or score.value < 0.3:  # a hard failure needs no second opinion
            return score
        text = scoring.answer_text(ans.response)[0]
        jstep = StepRequest(step.index, judge.model, judge_body(self.policy, self.body, text), "judge")
        try:
            verdict = await self._call(jstep)
        except GatewayError:
            return scoring.Score(score.value, (*score.reasons, "judge:unavailable"))
        rec.cost_usd += verdict.cost_usd
        return scoring.blend_judge(score, scoring.parse_judge(scoring.answer_text(verdict.response)[0]), judge.weight)

    def outcome(self) -> CascadeOutcome:
        if self.best is None:
            raise self.last_error or BudgetExceeded("The budget cannot cover any step of this cascade")
        if not self.stop_reason:
            self.stop_reason = "no stronger step left"
        self.steps.sort(key=lambda s: (s.index, s.purpose != "answer"))
        return CascadeOutcome(self.policy.mode, self.best[0], self.best[1], self.steps, self.stop_reason)


def summarize(outcome: CascadeOutcome) -> dict[str, Any]:
    """The ``tiergate_cascade`` extension field of a cascaded response."""
    ans = outcome.answer
    return {"mode": outcome.mode, "stop_reason": outcome.stop_reason, "cost_usd": round(outcome.cost_usd, 8),
            "final": {"model": ans.model if ans else None, "tier": ans.tier if ans else None,
                      "score": outcome.score.to_dict() if outcome.score else None},
            "steps": [s.to_dict() for s in outcome.steps]}


def header_value(outcome: CascadeOutcome) -> str:
    """Compact ``x-tiergate-cascade``: ``escalate;0:cheap=0.20:rejected;1:mid=0.85:accepted;cost=0.000123``."""
    parts = [outcome.mode]
    for s in outcome.steps:
        score = f"{s.score:.2f}" if s.score is not None else "-"
        parts.append(f"{s.index}:{_ascii(s.model or s.target)}={score}:{s.status}")
    parts.append(f"cost={outcome.cost_usd:.6f}")
    return ";".join(parts)


def _ascii(s: str) -> str:
    return s.encode("ascii", "replace").decode().replace(";", ",")
