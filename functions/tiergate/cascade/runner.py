"""Running a cascade plan: in process, or on the deployed Step Functions state machine.

The gateway calls :meth:`CascadeRunner.run` for a plan with ``mode="cascade"``
(``model: "cascade[:policy]"``, or ``auto`` when ``routing.auto_cascade`` says so). Both
runners execute the steps of :mod:`tiergate.cascade.steps`; which one runs is a
deployment choice: the state machine is generated from the ``default`` policy, so that
policy runs there when one is configured, every other policy (and every policy locally)
in process. :meth:`CascadeRunner.explain` is the ``POST /v1/route`` dry run of a draft.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tiergate.cascade import scoring, steps
from tiergate.cascade.engine import CascadeEngine
from tiergate.cascade.service import CascadeDeps, ServiceSteps
from tiergate.cascade.types import StepRequest
from tiergate.config.cascades import CascadePolicy
from tiergate.config.catalog import ModelSpec
from tiergate.errors import ModelNotFound
from tiergate.execution.executor import CallContext
from tiergate.limits.admission import Principal
from tiergate.request import GatewayRequest
from tiergate.request.model_ref import DEFAULT_CASCADE_POLICY

#: The policy the deployed state machine runs.
STATE_MACHINE_POLICY = DEFAULT_CASCADE_POLICY


class RemoteCascade(Protocol):
    """The deployed state machine (``StartSyncExecution``): the execution input (a state
    from :func:`tiergate.cascade.steps.start`) in, the ``finish`` step's result out;
    a failed execution raises the gateway error class the state machine reported."""

    def run(self, payload: Mapping[str, Any], *, name: str | None = None) -> dict[str, Any]: ...


@dataclass(slots=True)
class CascadeResult:
    response: dict[str, Any]
    cost_usd: float
    header_value: str
    deployment: ModelSpec
    attempts: int
    stop_reason: str
    steps: list[dict[str, Any]] = field(default_factory=list)


class CascadeRunner:
    def __init__(self, deps: CascadeDeps, *, remote: RemoteCascade | None = None) -> None:
        self.deps = deps
        self.remote = remote

    def policy(self, name: str | None) -> tuple[str, CascadePolicy]:
        name = name or DEFAULT_CASCADE_POLICY
        try:
            return name, self.deps.catalog.cascades[name]
        except KeyError:
            known = ", ".join(sorted(self.deps.catalog.cascades)) or "none configured"
            raise ModelNotFound(f"Unknown cascade policy '{name}' (known: {known})", param="model") from None

    async def run(self, req: GatewayRequest, principal: Principal, *, policy_name: str | None,
                  request_id: str, max_tier: int | None = None) -> CascadeResult:
        """Run one request's cascade; raises the last step's error when no step answered."""
        name, policy = self.policy(policy_name)
        task = req.task.task_type
        ctx = CallContext(request_id=request_id, deadline=time.monotonic() + self.deps.catalog.reliability.deadline_s,
                          client_gone=req.client_gone)
        port = ServiceSteps(self.deps, policy, req.body, principal, ctx, task, needs=req.needs, policy_name=name)
        target = self.deps.scorer.target_for(req, principal) if self.deps.scorer is not None else None
        if self.remote is not None and name == STATE_MACHINE_POLICY and policy.mode != "parallel":
            state = steps.start(policy, name, req.body, task_type=task, principal=principal.snapshot(),
                                request_id=request_id, max_tier=max_tier, tier_of=port.tier_of,
                                quality_target=target)
            out = await asyncio.to_thread(self.remote.run, {k: v for k, v in state.items() if k != "policy"},
                                          name=request_id)
            return self._result(out, None)
        state, kept = await CascadeEngine(policy, port=port, name=name).run_state(
            req.body, task_type=task, max_tier=max_tier, principal=principal.snapshot(), request_id=request_id,
            quality_target=target)
        out = steps.finish(state)
        best = kept.get(state["cursor"]["best"]["index"])
        return self._result(out, best.deployment if best is not None else None)

    @staticmethod
    def _target_model(port: ServiceSteps, target: str) -> str | None:
        """The model a step target would use first (what the scorer is told answered)."""
        try:
            cands = port.candidates(target)
        except ModelNotFound:
            return None
        return cands[0].name if cands else None

    def _result(self, out: Mapping[str, Any], spec: ModelSpec | None) -> CascadeResult:
        cat = self.deps.catalog
        spec = spec or cat.by_id.get(out.get("deployment") or "")
        if spec is None:
            group = cat.groups.get(out["model"])
            spec = group[0] if group else next(m for m in cat.models if m.tier == out["tier"])
        summary = out["response"].get("tiergate_cascade", {})
        return CascadeResult(out["response"], float(out["cost_usd"]), out["header"], spec,
                             int(out.get("attempts") or len(summary.get("steps", []))),
                             str(out.get("stop_reason") or summary.get("stop_reason") or "cascade on Step Functions"),
                             list(summary.get("steps", [])))

    def explain(self, req: GatewayRequest, policy_name: str | None, draft: Any) -> dict[str, Any]:
        """``POST /v1/route`` with ``draft``: the score, the reasons and the cascade's decision,
        with no model called: the same scorer and :func:`~tiergate.cascade.steps.decide`."""
        message = {"role": "assistant", "content": draft} if isinstance(draft, str) else dict(draft)
        finish = message.pop("finish_reason", "stop")
        draft_model = message.pop("model", None)
        response = {"choices": [{"message": message, "finish_reason": finish}]}
        score = scoring.score_response(scoring.expectations(req.body), response)
        name = policy_name or DEFAULT_CASCADE_POLICY
        policy_ = self.deps.catalog.cascades.get(name)
        ctx = CallContext(request_id="dry-run", deadline=time.monotonic())
        # The dry run estimates with every deployment visible; admission is not consulted.
        port = ServiceSteps(self.deps, policy_ or CascadePolicy(), req.body, Principal(key_id="dry-run", is_master=True),
                            ctx, req.task.task_type if policy_ else None, needs=req.needs)
        targets = steps.capped_targets(policy_, None, port.tier_of) if policy_ else ()
        model = draft_model or (self._target_model(port, targets[0]) if targets else None)
        score = steps.learned_score(port, req.body, score, scoring.answer_text(response)[0], model)
        out: dict[str, Any] = {"score": score.value, "reasons": list(score.reasons),
                               "scorer": "learned" if steps.learned_scorer(port) is not None else "rules"}
        if policy_ is None:
            out["decision"] = None
            out["note"] = "no cascade policy applies to this request"
            return out
        policy = policy_
        task = req.task.task_type
        target = self.deps.scorer.target_for(req) if self.deps.scorer is not None else None
        state = {"task_type": task, "cursor": {"quality_target": target}}
        threshold = steps.threshold_of(port, policy, state)
        nxt = StepRequest(1, targets[1], req.body) if len(targets) > 1 else None
        d = steps.decide(policy, task_type=task, score=score.value, index=0, targets=targets,
                         next_estimate_usd=port.estimate(nxt) if nxt else None, threshold=threshold)
        out.update(policy=name, task_type=task, threshold=threshold, draft_step=targets[0], draft_model=model,
                   decision=d.to_dict())
        if target is not None:
            out["quality_target"] = target
        if policy.judge_for(task) is not None:
            out["judge"] = "not run in a dry run; the engine blends its verdict into this score"
        return out

