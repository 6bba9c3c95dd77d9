"""Binds the cascade engine to the gateway's real parts: Router, Executor, Admission.

The gateway calls :meth:`CascadeRunner.run` for a :class:`~tiergate.routing.plan.RoutePlan`
with ``mode="cascade"`` (``model: "cascade[:policy]"``, or ``auto`` when the catalog's
``routing.auto_cascade`` says so); :func:`install` registers it and the ``POST /v1/route``
draft explainer in ``services.extra``. :func:`run_cascade` is the same path as one call.

Each step is one Executor call over the step's candidates (a tier's usable deployments,
or one model group), reserved with ``admission.admit(..., cascade_step=i)`` and settled
right after it with its actual cost. A step the budget cannot cover is not started; a
ticket's ``max_tier`` (soft limit) lowers the ceiling of the remaining steps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tiergate.admission import AdmissionRequest, Outcome, Principal, Ticket, new_request_id
from tiergate.catalog import ModelSpec
from tiergate.errors import ModelNotFound, NoRouteAvailable
from tiergate.execution.executor import CallContext
from tiergate.routing import scoring
from tiergate.routing.cascade import (
    CascadeEngine,
    CascadeOutcome,
    StepAnswer,
    StepRecord,
    StepRequest,
    capped_targets,
    decide,
    header_value,
    summarize,
)
from tiergate.routing.classify import classify
from tiergate.routing.plan import RequestNeeds, needs_of
from tiergate.routing.policy import CascadePolicy

_NOT_UPSTREAM = ("model", "stream", "stream_options")


@dataclass(slots=True)
class CascadeResult:
    response: dict[str, Any]
    steps: list[StepRecord]
    cost_usd: float
    header_value: str
    final_deployment: ModelSpec
    outcome: CascadeOutcome | None
    attempts: int = 0
    stop_reason: str = ""


@dataclass(slots=True)
class _Lease:
    ticket: Ticket
    candidates: list[ModelSpec]
    started: float
    max_tier: int | None


@dataclass(slots=True)
class _Usage:
    prompt: int = 0
    completion: int = 0
    attempts: int = 0


class ServiceSteps:
    """The engine's ``answer`` callable and budget guard over a :class:`Services` container."""

    def __init__(self, services: Any, policy: CascadePolicy, body: Mapping[str, Any], principal: Principal,
                 ctx: CallContext, task_type: str | None = None) -> None:
        self.s = services
        self.policy = policy
        self.principal = principal
        self.ctx = ctx
        self.task_type = task_type
        self.upstream = {k: v for k, v in body.items() if k not in _NOT_UPSTREAM}
        self.needs: RequestNeeds = needs_of(body)
        self.usage = _Usage()
        self._cands: dict[str, list[ModelSpec]] = {}

    # --- targets --------------------------------------------------------------------

    def tier_of(self, target: str) -> int | None:
        name = self.s.catalog.resolve_alias(target)
        if name.startswith("tier:"):
            return int(name[5:])
        group = self.s.catalog.groups.get(name)
        return group[0].tier if group else None

    def candidates(self, target: str) -> list[ModelSpec]:
        if target not in self._cands:
            name = self.s.catalog.resolve_alias(target)
            if name.startswith("tier:"):
                found, _ = self.s.router.tier_candidates(int(name[5:]), self.principal, self.needs)
            elif name in self.s.catalog.groups:
                found, _ = self.s.router.tier_candidates(self.s.catalog.groups[name][0].tier, self.principal,
                                                         self.needs)
                found = [c for c in found if c.name == name]
            else:
                raise ModelNotFound(f"cascade step '{target}' names no model in the catalog", param="model")
            self._cands[target] = list(found)
        return self._cands[target]

    def _max_out(self, step: StepRequest) -> int:
        if step.purpose == "judge" and self.policy.judge is not None:
            return self.policy.judge.max_tokens
        return self.needs.max_output_tokens or self.policy.estimate_output_tokens

    # --- BudgetGuard --------------------------------------------------------------------

    def estimate(self, step: StepRequest) -> float:
        try:
            cands = self.candidates(step.target)
        except ModelNotFound:
            return 0.0
        out = self._max_out(step)
        return max((c.cost_usd(self.needs.prompt_tokens, out) for c in cands), default=0.0)

    async def admit(self, step: StepRequest) -> _Lease:
        cands = self.candidates(step.target)
        if not cands:
            raise NoRouteAvailable(f"cascade step '{step.target}' has no usable deployment")
        out = self._max_out(step)
        spec = max(cands, key=lambda c: c.cost_usd(self.needs.prompt_tokens, out))
        ticket = await self.s.admission.admit(self.principal, AdmissionRequest(
            request_id=f"{self.ctx.request_id}.{step.index}{step.purpose[0]}", deployment=spec,
            prompt_tokens=self.needs.prompt_tokens, max_output_tokens=out,
            estimate_usd=spec.cost_usd(self.needs.prompt_tokens, out), cascade_step=step.index))
        return _Lease(ticket, cands, time.perf_counter(), ticket.max_tier if ticket.soft_limited else None)

    async def settle(self, lease: _Lease, answer: StepAnswer | None, error: BaseException | None) -> None:
        p = c = 0
        if answer is not None:
            u = answer.response.get("usage") or {}
            p, c = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
            self.usage.prompt += p
            self.usage.completion += c
            self.usage.attempts += answer.attempts
        code = getattr(error, "code", None) or type(error).__name__ if error is not None else None
        await self.s.admission.settle(lease.ticket, Outcome(
            deployment=answer.deployment if answer else None, prompt_tokens=p, completion_tokens=c,
            cost_usd=answer.cost_usd if answer else 0.0, latency_ms=(time.perf_counter() - lease.started) * 1000,
            attempts=answer.attempts if answer else 0, outcome="ok" if answer else f"error:{code}",
            capability=self.task_type))

    # --- answer -------------------------------------------------------------------------

    async def answer(self, step: StepRequest, lease: _Lease) -> StepAnswer:
        body = self.upstream if step.purpose == "answer" else {
            k: v for k, v in step.body.items() if k not in _NOT_UPSTREAM}
        r = await self.s.executor.execute(lease.candidates, body, self.ctx, prompt_estimate=self.needs.prompt_tokens)
        usage = r.response.setdefault("usage", {})
        usage.setdefault("prompt_tokens", r.prompt_tokens)
        usage.setdefault("completion_tokens", r.completion_tokens)
        return StepAnswer(r.response, model=r.deployment.name, tier=r.deployment.tier, cost_usd=r.cost_usd,
                          latency_ms=r.latency_ms, attempts=len(r.attempts), deployment=r.deployment)


def policy_named(services: Any, name: str | None) -> tuple[str, CascadePolicy]:
    name = name or "default"
    try:
        return name, services.catalog.cascades[name]
    except KeyError:
        known = ", ".join(sorted(services.catalog.cascades)) or "none configured"
        raise ModelNotFound(f"Unknown cascade policy '{name}' (known: {known})", param="model") from None


async def run_cascade(services: Any, policy_name: str | None, body: Mapping[str, Any], principal: Principal,
                      ctx: CallContext, *, task_type: str | None = None) -> CascadeResult:
    """Run a catalog cascade policy for one chat request, in process."""
    name, policy = policy_named(services, policy_name)
    if task_type is None:
        task_type = classify(body.get("messages") or [], services.catalog.routing.keywords).task_type
    steps = ServiceSteps(services, policy, body, principal, ctx, task_type)
    engine = CascadeEngine(policy, steps.answer, guard=steps, tier_of=steps.tier_of)
    outcome = await engine.run(body, task_type=task_type)
    assert outcome.answer is not None  # run() raises when no step answered
    final = outcome.answer
    response = dict(final.response)
    response["model"] = final.model
    response["usage"] = {"prompt_tokens": steps.usage.prompt, "completion_tokens": steps.usage.completion,
                         "total_tokens": steps.usage.prompt + steps.usage.completion,
                         "cost_usd": round(outcome.cost_usd, 10)}
    response["tiergate_cascade"] = {"policy": name, "task_type": task_type, **summarize(outcome)}
    return CascadeResult(response, outcome.steps, outcome.cost_usd, header_value(outcome), final.deployment,
                         outcome, steps.usage.attempts, outcome.stop_reason)


@dataclass
class CascadeRunner:
    """What the gateway calls for cascade plans (``services.extra['cascades']``)."""

    services: Any

    async def run(self, plan: Any, body: dict[str, Any], principal: Principal, hints: dict[str, str]) -> Any:
        from tiergate.gateway import Completed, header_safe  # the gateway imports this module lazily

        started = time.perf_counter()
        ctx = CallContext(request_id=new_request_id(),
                          deadline=time.monotonic() + self.services.catalog.reliability.deadline_s)
        task = plan.task.task_type if getattr(plan, "task", None) else None
        if self._on_step_functions(plan.cascade_policy):
            r = await self._run_state_machine(body, task, principal, ctx)
        else:
            r = await run_cascade(self.services, plan.cascade_policy, body, principal, ctx, task_type=task)
        r.response.setdefault("id", ctx.request_id)
        spec = r.final_deployment
        headers = {
            "x-request-id": ctx.request_id, "x-tiergate-model": spec.name, "x-tiergate-deployment": spec.deployment_id,
            "x-tiergate-tier": str(spec.tier), "x-tiergate-attempts": str(r.attempts),
            "x-tiergate-cost-usd": f"{r.cost_usd:.10f}", "x-tiergate-cascade": header_safe(r.header_value, 1000),
            "x-tiergate-route-reason": header_safe(f"{plan.reason}; {r.stop_reason}"),
        }
        telemetry = self.services.telemetry
        latency = (time.perf_counter() - started) * 1000

        async def settle() -> None:  # every step was settled as it finished; only telemetry is left
            if telemetry is not None:
                telemetry.emit({"request_id": ctx.request_id, "model": spec.name, "tier": spec.tier,
                                "cost_usd": r.cost_usd, "latency_ms": latency, "cascade_steps": len(r.steps),
                                "outcome": "ok"})

        return Completed(r.response, headers, settle, spec, r.cost_usd)


    def _on_step_functions(self, policy: str | None) -> bool:
        # The deployed state machine is generated from the "default" policy; other
        # policies (and every policy locally) run in process with the same engine steps.
        return bool(self.services.settings.cascade_state_machine_arn) and (policy or "default") == "default"

    async def _run_state_machine(self, body: dict[str, Any], task: str | None, principal: Principal,
                                 ctx: CallContext) -> CascadeResult:
        """The cloud path: ``StartSyncExecution`` of the Express state machine; its Lambda
        tasks run the same answer/score/finish steps. Failures come back as our errors."""
        sfn = self.services.extra.get("sfn_cascade")
        if sfn is None:
            from tiergate.aws import CascadeRunner as StepFunctionsRunner

            sfn = self.services.extra["sfn_cascade"] = StepFunctionsRunner(
                self.services.settings.cascade_state_machine_arn)
        from tiergate.routing.cascade_steps import execution_input  # imports this module

        payload = execution_input(body, task_type=task, principal=principal, request_id=ctx.request_id)
        out = await asyncio.to_thread(sfn.run, payload, name=ctx.request_id)
        group = self.services.catalog.groups.get(out["model"])
        spec = group[0] if group else next(m for m in self.services.catalog.models if m.tier == out["tier"])
        steps = out["response"].get("tiergate_cascade", {}).get("steps", [])
        summary = out["response"].get("tiergate_cascade", {})
        return CascadeResult(out["response"], steps, out["cost_usd"], out["header"], spec, None, len(steps),
                             str(summary.get("stop_reason") or "cascade on Step Functions"))


def explain_draft(services: Any) -> Callable[[Any, dict[str, Any], Any], dict[str, Any]]:
    """``POST /v1/route`` with ``draft``: the score, the reasons and the cascade's decision, with
    no model called. The same :func:`decide` the engine uses, on the same scorer."""

    def explain(plan: Any, chat: dict[str, Any], draft: Any) -> dict[str, Any]:
        message = {"role": "assistant", "content": draft} if isinstance(draft, str) else dict(draft)
        finish = message.pop("finish_reason", "stop")
        score = scoring.score_response(scoring.expectations(chat),
                                       {"choices": [{"message": message, "finish_reason": finish}]})
        out: dict[str, Any] = {"score": score.value, "reasons": list(score.reasons)}
        name = getattr(plan, "cascade_policy", None) or "default"
        if name not in services.catalog.cascades:
            out["decision"] = None
            out["note"] = "no cascade policy applies to this request"
            return out
        policy = services.catalog.cascades[name]
        task = plan.task.task_type if getattr(plan, "task", None) else None
        ctx = CallContext(request_id="dry-run", deadline=time.monotonic())
        steps = ServiceSteps(services, policy, chat, _principal_of(plan), ctx, task)
        targets = capped_targets(policy, None, steps.tier_of)
        nxt = StepRequest(1, targets[1], chat) if len(targets) > 1 else None
        d = decide(policy, task_type=task, score=score.value, index=0, targets=targets,
                   next_estimate_usd=steps.estimate(nxt) if nxt else None)
        out.update(policy=name, task_type=task, threshold=policy.threshold_for(task), draft_step=targets[0],
                   decision=d.to_dict())
        if policy.judge_for(task) is not None:
            out["judge"] = "not run in a dry run; the engine blends its verdict into this score"
        return out

    return explain


def _principal_of(plan: Any) -> Principal:
    # The dry run estimates with every deployment visible; admission is not consulted.
    return Principal(key_id="dry-run", is_master=True)


def install(services: Any) -> None:
    """Register the runner and the draft explainer (called by ``tiergate.bootstrap``)."""
    services.extra["cascades"] = CascadeRunner(services)
    services.extra["draft_explainer"] = explain_draft(services)
