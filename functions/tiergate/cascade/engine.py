"""The in-process cascade runner: answer cheap, score, pay for a stronger model only when needed.

:class:`CascadeEngine` drives the steps of :mod:`tiergate.cascade.steps` in a loop -- the
same functions the Step Functions state machine calls one Lambda task at a time, so both
runners take the same decisions. Through an injected :class:`~tiergate.cascade.types.Port`
(one model call per step, a budget guard, the tier of a target) it is shared by the
gateway (:mod:`tiergate.cascade.service` binds it to the Router, Executor and Admission),
the edge and the tests.

Modes: ``escalate`` (cheapest first; accept at the threshold; stop at the top or the cost
ceiling; return the best-scored), ``refine`` (a cheap draft, improved by stronger steps),
``parallel`` (in process only: fan out; the first acceptable answer wins and the rest are
cancelled, else the best-scored when all finish).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from tiergate.cascade import steps
from tiergate.cascade.types import (
    BudgetGuard,
    CascadeOutcome,
    NoBudget,
    Port,
    StepAnswer,
    StepRecord,
    StepRequest,
    tier_of_target,
)
from tiergate.config.cascades import CascadePolicy
from tiergate.errors import GatewayError

AnswerFn = Callable[[StepRequest, Any], Awaitable[StepAnswer]]


class FnPort:
    """A :class:`Port` from an answer function and a budget guard."""

    def __init__(self, answer: AnswerFn, guard: BudgetGuard | None = None,
                 tier_of: Callable[[str], int | None] = tier_of_target) -> None:
        self._answer, self._guard, self._tier_of = answer, guard or NoBudget(), tier_of

    def tier_of(self, target: str) -> int | None:
        return self._tier_of(target)

    def estimate(self, step: StepRequest) -> float:
        return self._guard.estimate(step)

    async def admit(self, step: StepRequest) -> Any:
        return await self._guard.admit(step)

    async def settle(self, lease: Any, answer: StepAnswer | None, error: BaseException | None) -> None:
        await self._guard.settle(lease, answer, error)

    async def answer(self, step: StepRequest, lease: Any) -> StepAnswer:
        return await self._answer(step, lease)


class CascadeEngine:
    def __init__(self, policy: CascadePolicy, answer: AnswerFn | None = None, *, guard: BudgetGuard | None = None,
                 tier_of: Callable[[str], int | None] = tier_of_target, port: Port | None = None,
                 name: str = "inline") -> None:
        if port is None:
            assert answer is not None, "an answer function or a port"
            port = FnPort(answer, guard, tier_of)
        self.policy, self.port, self.name = policy, port, name

    async def run(self, body: Mapping[str, Any], *, task_type: str | None = None, max_tier: int | None = None,
                  principal: Mapping[str, str] | None = None, request_id: str = "cascade") -> CascadeOutcome:
        """Run the policy for one request. Raises the last error when no step produced an answer."""
        state, kept = await self.run_state(body, task_type=task_type, max_tier=max_tier, principal=principal,
                                           request_id=request_id)
        return outcome(state, kept)

    async def run_state(self, body: Mapping[str, Any], *, task_type: str | None = None,
                        max_tier: int | None = None, principal: Mapping[str, Any] | None = None,
                        request_id: str = "cascade", quality_target: float | None = None
                        ) -> tuple[dict[str, Any], dict[int, StepAnswer]]:
        """The final state (what :func:`tiergate.cascade.steps.finish` reads) and the answer
        objects by step index."""
        state = steps.start(self.policy, self.name, body, task_type=task_type, principal=principal,
                            request_id=request_id, max_tier=max_tier, tier_of=self.port.tier_of,
                            quality_target=quality_target)
        kept: dict[int, StepAnswer] = {}
        if self.policy.mode == "parallel":
            await _Parallel(self, state, kept).run()
            return state, kept
        last_error: GatewayError | None = None
        while (nxt := state["cursor"]["next"]) == "answer":
            try:
                state["current"] = await steps.answer(self.port, state, keep=kept)
            except GatewayError as e:
                last_error = e
                state["error"] = {"Error": type(e).__name__, "Cause": e.message}
                state["cursor"] = steps.recover(self.port, state)
                continue
            state["cursor"] = await steps.score(self.port, state)
        if nxt == "fail":
            assert last_error is not None
            raise last_error
        return state, kept


def outcome(state: Mapping[str, Any], kept: Mapping[int, StepAnswer]) -> CascadeOutcome:
    best = state["cursor"]["best"]
    answer = kept.get(best["index"]) if best else None
    if best and answer is None:  # the answer came from another runner: rebuild it from the state
        answer = StepAnswer(best["response"], best["model"], best["tier"], 0.0, 0.0)
    return CascadeOutcome(state["policy"]["spec"]["mode"], answer, steps.final_score(state), steps.records(state),
                          state["cursor"]["stop_reason"] or "no stronger step left")


class _Parallel:
    """Fan out to the policy's steps at once; the first acceptable answer wins. Writes the
    same cursor (steps, best, usage, stop reason) the sequential steps write."""

    def __init__(self, engine: CascadeEngine, state: dict[str, Any], kept: dict[int, StepAnswer]) -> None:
        self.e, self.state, self.kept = engine, state, kept
        self.cur = state["cursor"]
        self.policy = engine.policy
        self.records: list[StepRecord] = []
        self.best: float | None = None
        self.accepted = False
        self.last_error: BaseException | None = None

    async def run(self) -> None:
        targets = self.cur["targets"]
        fan = [StepRequest(i, t, dict(self.state["request"])) for i, t in
               enumerate(targets[: self.policy.fan_out or len(targets)])]
        port = self.e.port
        if self.policy.max_cost_usd is not None:  # drop the priciest until the fan-out fits the ceiling
            while len(fan) > 1 and sum(port.estimate(s) for s in fan) > self.policy.max_cost_usd:
                dropped = max(fan, key=port.estimate)
                fan.remove(dropped)
                self.records.append(StepRecord(dropped.index, "answer", dropped.target, "skipped:ceiling"))
        pending = {asyncio.ensure_future(self._one(s)) for s in fan}
        try:
            while pending and not self.accepted:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if self.cur["best"] is None:
            raise self.last_error or GatewayError("no step of the cascade answered")
        self.cur["steps"] = [r.to_dict() for r in self.records]
        self.cur["spent_usd"] = sum(r.cost_usd for r in self.records)
        self.cur["next"] = "finish"
        self.cur["stop_reason"] = "accepted" if self.accepted else "all steps finished"

    async def _one(self, step: StepRequest) -> None:
        rec = StepRecord(step.index, "answer", step.target, "error", tier=self.e.port.tier_of(step.target))
        self.records.append(rec)
        try:
            ans, _ = await steps.call(self.e.port, step)
        except asyncio.CancelledError:
            rec.status = "cancelled"
            raise
        except GatewayError as e:
            rec.status = "skipped:budget" if type(e).__name__ == steps.BUDGET_ERROR else "error"
            rec.error = e.message if rec.status == "skipped:budget" else f"{type(e).__name__}: {e.message}"
            self.last_error = e
            return
        current = steps.current_of(step, ans, None)
        score, verdict = await steps.judged(self.e.port, self.policy, self.state["request"],
                                            self.state.get("task_type"), current)
        steps.add_usage(self.cur, ans.response, ans.attempts)
        if verdict is not None:
            steps.add_usage(self.cur, verdict.response, verdict.attempts)
        rec.model, rec.tier, rec.latency_ms = ans.model, ans.tier, ans.latency_ms
        rec.cost_usd = ans.cost_usd + (verdict.cost_usd if verdict else 0.0)
        rec.score, rec.reasons = score.value, score.reasons
        ok = score.value >= steps.threshold_of(self.e.port, self.policy, self.state)
        rec.status = "accepted" if ok and not self.accepted else "rejected"
        if self.best is None or score.value > self.best or rec.status == "accepted":
            self.best = score.value
            self.kept[step.index] = ans
            self.cur["best"] = steps.best_of(current, score)
        if rec.status == "accepted":
            self.accepted = True


def summarize(outcome: CascadeOutcome) -> dict[str, Any]:
    """The ``tiergate_cascade`` summary of an outcome (without policy name and task type)."""
    ans = outcome.answer
    return {"mode": outcome.mode, "stop_reason": outcome.stop_reason, "cost_usd": round(outcome.cost_usd, 8),
            "final": {"model": ans.model if ans else None, "tier": ans.tier if ans else None,
                      "score": outcome.score.to_dict() if outcome.score else None},
            "steps": [s.to_dict() for s in outcome.steps]}


def header_value(outcome: CascadeOutcome) -> str:
    return steps.header_of(outcome.mode, outcome.steps)

