"""The cascade's steps over a JSON state, one per Step Functions Lambda task (issue 5).

The state machine (:mod:`tiergate.routing.stepfunctions`) carries this state between
tasks; each function here takes it and returns the piece the ASL stores back:

``answer(state) -> current``   one model call for step ``cursor.index`` (refine mode: the
                               stronger step improves the best draft so far)
``score(state)  -> cursor``    score ``current`` (deterministic checks, judge if enabled),
                               update spend/best/steps, and precompute what the ``Choice``
                               states read: ``score``, ``threshold``, ``has_next``,
                               ``projected_usd`` (the same :func:`~tiergate.routing.cascade.decide`)
``finish(state) -> result``    the best answer as the final response, with the steps taken

State (JSON)::

    {"request": {chat body}, "task_type": str|null, "principal": {"key_id", "tenant"},
     "request_id": str, "policy": {"name", "targets", "spec": {CascadePolicy}},
     "cursor": {"index", "spent_usd", "best", "steps", "score", "threshold", "has_next",
                "next_index", "projected_usd", "decision"},
     "current": {answer}, "error": {"Error", "Cause"} (after a Catch)}
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tiergate.admission import Principal
from tiergate.execution.executor import CallContext
from tiergate.routing import scoring
from tiergate.routing.cascade import (
    CascadeOutcome,
    StepAnswer,
    StepRecord,
    StepRequest,
    decide,
    header_value,
    judge_body,
    refine_body,
    summarize,
)
from tiergate.routing.cascade_runner import ServiceSteps
from tiergate.routing.policy import CascadePolicy


def initial_cursor(policy: CascadePolicy) -> dict[str, Any]:
    return {"index": 0, "spent_usd": 0.0, "best": None, "steps": [], "score": 0.0,
            "threshold": policy.threshold, "has_next": len(policy.targets()) > 1, "next_index": 1,
            "projected_usd": 0.0, "decision": None}


def execution_input(body: Mapping[str, Any], *, task_type: str | None, principal: Principal,
                    request_id: str) -> dict[str, Any]:
    """What the API function passes to ``StartSyncExecution``."""
    return {"request": dict(body), "task_type": task_type, "request_id": request_id,
            "principal": {"key_id": principal.key_id, "tenant": principal.tenant}}


def _policy(state: Mapping[str, Any]) -> CascadePolicy:
    return CascadePolicy.model_validate(state["policy"]["spec"])


def _steps(services: Any, state: Mapping[str, Any], policy: CascadePolicy) -> ServiceSteps:
    p = state.get("principal") or {}
    principal = Principal(key_id=str(p.get("key_id", "cascade")), tenant=str(p.get("tenant", "default")))
    ctx = CallContext(request_id=str(state.get("request_id") or "cascade"),
                      deadline=time.monotonic() + services.catalog.reliability.deadline_s)
    return ServiceSteps(services, policy, state["request"], principal, ctx, state.get("task_type"))


async def _call(steps: ServiceSteps, step: StepRequest) -> StepAnswer:
    lease = await steps.admit(step)
    try:
        ans = await steps.answer(step, lease)
    except BaseException as e:
        await steps.settle(lease, None, e)
        raise
    await steps.settle(lease, ans, None)
    return ans


async def answer(services: Any, state: Mapping[str, Any]) -> dict[str, Any]:
    policy = _policy(state)
    cursor = state["cursor"]
    i = int(cursor["index"])
    target = policy.targets()[i]
    body, purpose = state["request"], "answer"
    best = cursor.get("best")
    if policy.mode == "refine" and i > 0 and best:
        body, purpose = refine_body(policy, state["request"], scoring.answer_text(best["response"])[0]), "refine"
    ans = await _call(_steps(services, state, policy), StepRequest(i, target, body, purpose))  # type: ignore[arg-type]
    return {"index": i, "target": target, "purpose": purpose, "model": ans.model, "tier": ans.tier,
            "cost_usd": ans.cost_usd, "latency_ms": ans.latency_ms, "attempts": ans.attempts,
            "response": ans.response}


async def score(services: Any, state: Mapping[str, Any]) -> dict[str, Any]:
    policy = _policy(state)
    cursor, cur = dict(state["cursor"]), state["current"]
    task = state.get("task_type")
    s = scoring.score_response(scoring.expectations(state["request"]), cur["response"])
    cost = float(cur["cost_usd"])
    judge = policy.judge_for(task)
    if judge is not None and s.value >= 0.3:
        steps = _steps(services, state, policy)
        text = scoring.answer_text(cur["response"])[0]
        try:
            verdict = await _call(steps, StepRequest(cur["index"], judge.model,
                                                     judge_body(policy, state["request"], text), "judge"))
            cost += verdict.cost_usd
            s = scoring.blend_judge(s, scoring.parse_judge(scoring.answer_text(verdict.response)[0]), judge.weight)
        except Exception:  # noqa: BLE001 - a judge failure never fails the cascade
            s = scoring.Score(s.value, (*s.reasons, "judge:unavailable"))
    threshold = policy.threshold_for(task)
    accepted = s.value >= threshold
    rec = StepRecord(cur["index"], cur["purpose"], cur["target"], "accepted" if accepted else "rejected",
                     tier=cur.get("tier"), model=cur.get("model"), score=s.value, reasons=s.reasons,
                     cost_usd=cost, latency_ms=float(cur.get("latency_ms") or 0.0))
    spent = float(cursor["spent_usd"]) + cost
    best = cursor.get("best")
    if best is None or s.value > best["score"]["value"] or (accepted and policy.mode == "refine"):
        best = {**{k: cur[k] for k in ("index", "target", "model", "tier", "response")}, "score": s.to_dict()}
    targets = policy.targets()
    i = int(cur["index"])
    nxt = StepRequest(i + 1, targets[i + 1], state["request"]) if i + 1 < len(targets) else None
    estimate = _steps(services, state, policy).estimate(nxt) if nxt else 0.0
    d = decide(policy, task_type=task, score=s.value, index=i, targets=targets, spent_usd=spent,
               next_estimate_usd=estimate if nxt else None)
    return {"index": i, "spent_usd": spent, "best": best, "steps": [*cursor["steps"], rec.to_dict()],
            "score": s.value, "threshold": threshold, "has_next": nxt is not None,
            "next_index": i + 1, "projected_usd": spent + estimate, "decision": d.to_dict()}


def finish(state: Mapping[str, Any]) -> dict[str, Any]:
    """The final chat.completion: the best answer, usage summed, the steps attached."""
    policy = _policy(state)
    cursor = state["cursor"]
    best = cursor.get("best")
    if not best:  # the ASL routes here only with a best answer; keep the contract explicit anyway
        raise ValueError("finish called without an answer")
    records = [StepRecord(**{**r, "reasons": tuple(r["reasons"])}) for r in cursor["steps"]]
    err = state.get("error")
    reason = (cursor.get("decision") or {}).get("reason") or "done"
    if err:
        reason = f"step failed ({err.get('Error')}); returning the best answer so far"
    sc = best["score"]
    final = StepAnswer(best["response"], best["model"], best["tier"], 0.0, 0.0)
    outcome = CascadeOutcome(policy.mode, final, scoring.Score(sc["value"], tuple(sc["reasons"]), sc.get("judge")),
                             records, reason)
    response = dict(best["response"])
    response["model"] = best["model"]
    usage = dict(response.get("usage") or {})
    usage["cost_usd"] = round(outcome.cost_usd, 10)
    response["usage"] = usage
    response["tiergate_cascade"] = {"policy": state["policy"]["name"], "task_type": state.get("task_type"),
                                    **summarize(outcome)}
    return {"response": response, "cost_usd": outcome.cost_usd, "header": header_value(outcome),
            "model": best["model"], "tier": best["tier"]}
