"""The cascade algorithm, once: steps over a JSON state that every runner calls.

Two runners drive these functions: the in-process engine (:mod:`tiergate.cascade.engine`,
a loop) and the Step Functions state machine (:mod:`tiergate.cascade.definition`, one
Lambda task per step, :mod:`tiergate.handlers.cascade`). Every decision -- accept,
escalate, stop at the cost ceiling, refine a draft (``refine_always``), lower the ceiling
on a soft budget limit, carry on after a judge or step failure -- is made here, so the
two runners cannot disagree; the state machine's ``Choice`` only reads ``cursor.next``.

``start(...)     -> state``    the initial state (targets capped by the budget's tier ceiling)
``answer(state)  -> current``  one model call for step ``cursor.index`` (admit, call, settle);
                               in refine mode a later step improves the best draft so far
``score(state)   -> cursor``   score ``current`` (deterministic checks, judge if enabled),
                               record it, and decide what comes next
``recover(state) -> cursor``   after ``answer`` failed (``state.error``): record it, decide
``finish(state)  -> result``   the best answer as the final response, with the steps taken

State (JSON)::

    {"request": {chat body}, "task_type": str|null, "principal": {"key_id", "tenant"},
     "request_id": str, "policy": {"name", "spec": {CascadePolicy}},
     "cursor": {"targets", "index", "next": "answer"|"finish"|"fail", "spent_usd", "usage",
                "best", "steps", "stop_reason", "failure"},
     "current": {answer of the last step}, "error": {"Error", "Cause"} (a failed step)}

``parallel`` policies run in process only (:mod:`tiergate.cascade.engine` fans out and
cancels the losers, which a state machine cannot); they score with the same functions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tiergate.cascade import scoring
from tiergate.cascade.types import Decision, Port, StepAnswer, StepRecord, StepRequest, tier_of_target
from tiergate.config.cascades import CascadePolicy
from tiergate.errors import GatewayError
from tiergate.request.classify import last_user_text

BUDGET_ERROR = "BudgetExceeded"


# --- pure decisions -----------------------------------------------------------------------


def decide(policy: CascadePolicy, *, task_type: str | None, score: float, index: int,
           targets: Sequence[str], spent_usd: float = 0.0, next_estimate_usd: float | None = None,
           threshold: float | None = None) -> Decision:
    """Accept the answer of step ``index``, escalate to the next step, or stop.
    ``threshold`` (the learned scorer's calibrated one) overrides the policy's."""
    if threshold is None:
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


# --- the state ------------------------------------------------------------------------------


def start(policy: CascadePolicy, name: str, body: Mapping[str, Any], *, task_type: str | None,
          principal: Mapping[str, str] | None = None, request_id: str = "cascade", max_tier: int | None = None,
          tier_of: Callable[[str], int | None] = tier_of_target, quality_target: float | None = None
          ) -> dict[str, Any]:
    """The initial state; ``max_tier`` is the budget's tier ceiling known before the first step;
    ``quality_target`` (a request's tightened target) travels in the cursor, so the state
    machine's tasks calibrate the learned scorer's threshold as the in-process engine does."""
    return {
        "request": dict(body), "task_type": task_type, "request_id": request_id,
        "principal": dict(principal or {"key_id": "cascade", "tenant": "default"}),
        "policy": {"name": name, "spec": policy.model_dump(mode="json")},
        "cursor": {"targets": list(capped_targets(policy, max_tier, tier_of)), "index": 0, "next": "answer",
                   "spent_usd": 0.0, "usage": {"prompt": 0, "completion": 0, "attempts": 0}, "best": None,
                   "steps": [], "stop_reason": "", "failure": None, "quality_target": quality_target},
    }


def policy_of(state: Mapping[str, Any]) -> CascadePolicy:
    return CascadePolicy.model_validate(state["policy"]["spec"])


def next_step(policy: CascadePolicy, state: Mapping[str, Any]) -> StepRequest:
    """The step ``answer`` runs: the cursor's target; in refine mode, after a draft exists,
    the stronger step is asked to improve the best draft so far."""
    cur = state["cursor"]
    i = int(cur["index"])
    body, purpose = dict(state["request"]), "answer"
    if policy.mode == "refine" and i > 0 and cur["best"]:
        body, purpose = refine_body(policy, state["request"], scoring.answer_text(cur["best"]["response"])[0]), "refine"
    return StepRequest(i, cur["targets"][i], body, purpose)  # type: ignore[arg-type]


async def call(port: Port, step: StepRequest) -> tuple[StepAnswer, int | None]:
    """admit -> answer -> settle; settled exactly once, also on failure or cancellation.
    Returns the answer and the lease's tier ceiling (soft budget limit), if any."""
    lease = await port.admit(step)
    try:
        ans = await port.answer(step, lease)
    except BaseException as e:
        await asyncio.shield(port.settle(lease, None, e))
        raise
    await port.settle(lease, ans, None)
    return ans, getattr(lease, "max_tier", None)


def current_of(step: StepRequest, ans: StepAnswer, max_tier: int | None) -> dict[str, Any]:
    dep = getattr(ans.deployment, "deployment_id", None)
    return {"index": step.index, "target": step.target, "purpose": step.purpose, "model": ans.model,
            "tier": ans.tier, "deployment": dep, "cost_usd": ans.cost_usd, "latency_ms": ans.latency_ms,
            "attempts": ans.attempts, "response": ans.response, "max_tier": max_tier}


async def answer(port: Port, state: Mapping[str, Any], *, keep: dict[int, StepAnswer] | None = None) -> dict[str, Any]:
    """Run step ``cursor.index``. Raises the step's :mod:`tiergate.errors` class on failure.
    ``keep`` (in process) receives the answer object, deployment included."""
    step = next_step(policy_of(state), state)
    ans, max_tier = await call(port, step)
    if keep is not None:
        keep[step.index] = ans
    return current_of(step, ans, max_tier)


def learned_scorer(port: Any) -> Any:
    """The port's trained answer scorer (``port.scorer``), when it has one that can score."""
    sc = getattr(port, "scorer", None)
    return sc if sc is not None and sc.threshold(None) is not None else None


def threshold_of(port: Any, policy: CascadePolicy, state: Mapping[str, Any]) -> float:
    """The accept threshold: the learned scorer's, calibrated for the cursor's quality target
    (the configured one when the request set none), else the policy's for the task type."""
    sc = learned_scorer(port)
    if sc is not None:
        return float(sc.threshold(state["cursor"].get("quality_target")))
    return policy.threshold_for(state.get("task_type"))


def learned_score(port: Any, body: Mapping[str, Any], s: scoring.Score, text: str, model: str | None
                  ) -> scoring.Score:
    """The trained scorer's prediction as the step's score, still capped by the deterministic
    hard failures (empty, refused, invalid JSON/code, truncated): those keep their score."""
    sc = learned_scorer(port)
    if sc is None or s.value < scoring.HARD_FAILURE:
        return s
    value = sc.score(body, text, model)
    if value is None:
        return s
    return scoring.Score(round(float(value), 4), (*s.reasons, f"learned:{value:.2f}"))


async def judged(port: Port, policy: CascadePolicy, body: Mapping[str, Any], task_type: str | None,
                 current: Mapping[str, Any]) -> tuple[scoring.Score, StepAnswer | None]:
    """The step's score: the deterministic checks (or, with a trained scorer, its prediction
    capped by their hard failures), and the judge's verdict blended in when the policy has a
    judge for this task type and the answer is not a hard failure. A judge that fails (any
    gateway error) leaves the score, marked as such."""
    s = scoring.score_response(scoring.expectations(body), current["response"])
    s = learned_score(port, body, s, scoring.answer_text(current["response"])[0], current.get("model"))
    judge = policy.judge_for(task_type)
    if judge is None or s.value < scoring.HARD_FAILURE:  # a hard failure needs no second opinion
        return s, None
    text = scoring.answer_text(current["response"])[0]
    try:
        verdict, _ = await call(port, StepRequest(int(current["index"]), judge.model,
                                                  judge_body(policy, body, text), "judge"))
    except GatewayError:
        return scoring.Score(s.value, (*s.reasons, "judge:unavailable")), None
    return scoring.blend_judge(s, scoring.parse_judge(scoring.answer_text(verdict.response)[0]), judge.weight), verdict


def add_usage(cursor: dict[str, Any], response: Mapping[str, Any], attempts: int) -> None:
    u = response.get("usage") or {}
    cursor["usage"] = {"prompt": cursor["usage"]["prompt"] + int(u.get("prompt_tokens") or 0),
                       "completion": cursor["usage"]["completion"] + int(u.get("completion_tokens") or 0),
                       "attempts": cursor["usage"]["attempts"] + attempts}


def best_of(current: Mapping[str, Any], s: scoring.Score) -> dict[str, Any]:
    best = {k: current[k] for k in ("index", "target", "purpose", "model", "tier", "deployment", "response")}
    best["score"] = s.to_dict()
    return best


def _lower_ceiling(cursor: dict[str, Any], index: int, max_tier: int | None, tier_of: Callable[[str], int | None]) -> None:
    """A soft budget limit seen at step ``index``: no later step above ``max_tier``."""
    if max_tier is None:
        return
    head, tail = cursor["targets"][: index + 1], cursor["targets"][index + 1:]
    cursor["targets"] = head + [t for t in tail if (tier_of(t) or 0) <= max_tier]


async def score(port: Port, state: Mapping[str, Any]) -> dict[str, Any]:
    """Score ``state.current``, record the step, and set ``cursor.next``."""
    policy, task = policy_of(state), state.get("task_type")
    cur, c = json.loads(json.dumps(state["cursor"])), state["current"]
    s, verdict = await judged(port, policy, state["request"], task, c)
    cost = float(c["cost_usd"]) + (verdict.cost_usd if verdict else 0.0)
    add_usage(cur, c["response"], int(c.get("attempts") or 1))
    if verdict is not None:
        add_usage(cur, verdict.response, verdict.attempts)
    i = int(c["index"])
    _lower_ceiling(cur, i, c.get("max_tier"), port.tier_of)
    accepted = s.value >= threshold_of(port, policy, state)
    rec = StepRecord(i, c["purpose"], c["target"], "accepted" if accepted else "rejected", tier=c.get("tier"),
                     model=c.get("model"), score=s.value, reasons=s.reasons, cost_usd=cost,
                     latency_ms=float(c.get("latency_ms") or 0.0))
    cur["spent_usd"] = float(cur["spent_usd"]) + cost
    best = cur["best"]
    if best is None or s.value > best["score"]["value"] or accepted:
        cur["best"] = best_of(c, s)
    if policy.mode == "refine" and i == 0 and accepted and policy.refine_always:
        rec.status, accepted = "draft", False  # a draft is improved even when it clears the threshold
    cur["steps"].append(rec.to_dict())
    if accepted:
        cur["next"], cur["stop_reason"] = "finish", "accepted"
        return cur
    return _advance(port, policy, state, cur, i, s.value)


def recover(port: Port, state: Mapping[str, Any]) -> dict[str, Any]:
    """After step ``cursor.index`` failed (``state.error``: ``{"Error": class name, "Cause"}``):
    a budget that cannot cover the step stops the cascade with the best answer so far; any
    other failure is recorded and the cascade goes on as if the step had scored 0."""
    policy = policy_of(state)
    cur = json.loads(json.dumps(state["cursor"]))
    err = state.get("error") or {}
    name, message = str(err.get("Error") or "UpstreamError"), error_message(err.get("Cause"))
    i = int(cur["index"])
    target = cur["targets"][i]
    rec = StepRecord(i, next_step(policy, state).purpose, target, "error", tier=port.tier_of(target))
    if name == BUDGET_ERROR:
        rec.status, rec.error = "skipped:budget", message
        cur["steps"].append(rec.to_dict())
        cur["stop_reason"] = f"budget cannot cover {target}"
        return _stop(cur, name, message)
    rec.error = f"{name}: {message}"
    cur["steps"].append(rec.to_dict())
    cur = _advance(port, policy, state, cur, i, 0.0)
    if cur["next"] == "finish":
        # Say what happened: this step failed (it has no score); the answer kept is the best so far.
        tail = "; no stronger step left" if "no stronger step" in cur["stop_reason"] else ""
        cur["stop_reason"] = f"step {i} ({target}) failed with {name}{tail}{_kept(cur, i)}"
        return _stop(cur, name, message)
    return cur


def _kept(cur: Mapping[str, Any], i: int) -> str:
    """When the answer kept is not step ``i``'s: which one, and its score."""
    best = cur.get("best")
    if not best or best["index"] == i:
        return ""
    return f"; kept step {best['index']} ({best['target']}, score {best['score']['value']:.2f})"


def _stop(cur: dict[str, Any], name: str, message: str) -> dict[str, Any]:
    """Finish with the best answer, or fail with the last error when there is none."""
    if cur["best"] is None:
        cur["next"], cur["failure"] = "fail", {"Error": name, "Cause": message}
    else:
        cur["next"] = "finish"
    return cur


def _advance(port: Port, policy: CascadePolicy, state: Mapping[str, Any], cur: dict[str, Any], i: int,
             value: float) -> dict[str, Any]:
    """After a step that did not end the cascade: go on to step ``i + 1``, or stop."""
    targets = cur["targets"]
    if policy.mode == "refine":
        if i + 1 >= len(targets):
            cur["next"], cur["stop_reason"] = "finish", cur["stop_reason"] or "no stronger step left"
            return cur
        cur["index"] = i + 1
        nxt = next_step(policy, {**state, "cursor": cur})
        ceiling = policy.max_cost_usd
        if ceiling is not None and cur["spent_usd"] + port.estimate(nxt) > ceiling:
            cur["steps"].append(StepRecord(nxt.index, nxt.purpose, nxt.target, "skipped:ceiling").to_dict())
            cur["next"], cur["stop_reason"] = "finish", f"{nxt.target} would pass the ${ceiling:g} ceiling"
            cur["index"] = i
            return cur
        cur["next"] = "answer"
        return cur
    nxt_req = StepRequest(i + 1, targets[i + 1], dict(state["request"])) if i + 1 < len(targets) else None
    d = decide(policy, task_type=state.get("task_type"), score=value, index=i, targets=targets,
               spent_usd=float(cur["spent_usd"]), next_estimate_usd=port.estimate(nxt_req) if nxt_req else None,
               threshold=threshold_of(port, policy, {**state, "cursor": cur}))
    if d.action == "escalate":
        cur["index"], cur["next"] = i + 1, "answer"
        return cur
    cur["next"], cur["stop_reason"] = "finish", d.reason + _kept(cur, i)
    if nxt_req is not None and "ceiling" in d.reason:
        cur["steps"].append(StepRecord(nxt_req.index, "answer", nxt_req.target, "skipped:ceiling").to_dict())
    return cur


def error_message(cause: Any) -> str:
    """A failed Lambda task's ``Cause`` is ``{"errorMessage": ..., "errorType": ...}`` as JSON."""
    text = str(cause or "")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return str(parsed["errorMessage"]) if isinstance(parsed, dict) and parsed.get("errorMessage") else text


# --- the result -----------------------------------------------------------------------------


def records(state: Mapping[str, Any]) -> list[StepRecord]:
    steps = [StepRecord.from_dict(r) for r in state["cursor"]["steps"]]
    steps.sort(key=lambda s: (s.index, s.purpose != "answer"))
    return steps


def final_score(state: Mapping[str, Any]) -> scoring.Score | None:
    best = state["cursor"]["best"]
    if not best:
        return None
    sc = best["score"]
    return scoring.Score(sc["value"], tuple(sc["reasons"]), sc.get("judge"))


def summarize_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """The ``tiergate_cascade`` extension field of a cascaded response."""
    cur, best, score_ = state["cursor"], state["cursor"]["best"], final_score(state)
    steps = records(state)
    return {"policy": state["policy"]["name"], "task_type": state.get("task_type"),
            "mode": state["policy"]["spec"]["mode"], "stop_reason": cur["stop_reason"] or "no stronger step left",
            "cost_usd": round(sum(s.cost_usd for s in steps), 8),
            "final": {"model": best["model"] if best else None, "tier": best["tier"] if best else None,
                      "score": score_.to_dict() if score_ else None},
            "steps": [s.to_dict() for s in steps]}


def header_of(mode: str, steps: Sequence[StepRecord]) -> str:
    """Compact ``x-tiergate-cascade``: ``escalate;0:cheap=0.20:rejected;1:mid=0.85:accepted;cost=0.000123``."""
    parts = [mode]
    for s in steps:
        sc = f"{s.score:.2f}" if s.score is not None else "-"
        parts.append(f"{s.index}:{_ascii(s.model or s.target)}={sc}:{s.status}")
    parts.append(f"cost={sum(s.cost_usd for s in steps):.6f}")
    return ";".join(parts)


def finish(state: Mapping[str, Any]) -> dict[str, Any]:
    """The final chat.completion: the best answer, usage summed over every call, the steps."""
    best = state["cursor"]["best"]
    if not best:  # the runners finish only with a best answer; keep the contract explicit anyway
        raise ValueError("finish called without an answer")
    steps = records(state)
    cost = sum(s.cost_usd for s in steps)
    u = state["cursor"]["usage"]
    response = dict(best["response"])
    response["model"] = best["model"]
    response["usage"] = {"prompt_tokens": u["prompt"], "completion_tokens": u["completion"],
                         "total_tokens": u["prompt"] + u["completion"], "cost_usd": round(cost, 10)}
    response["tiergate_cascade"] = summarize_state(state)
    return {"response": response, "cost_usd": cost, "header": header_of(state["policy"]["spec"]["mode"], steps),
            "model": best["model"], "tier": best["tier"], "deployment": best.get("deployment"),
            "attempts": u["attempts"], "stop_reason": response["tiergate_cascade"]["stop_reason"]}


def _ascii(s: str) -> str:
    return s.encode("ascii", "replace").decode().replace(";", ",")
