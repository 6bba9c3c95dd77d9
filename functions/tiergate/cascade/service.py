"""The cascade's :class:`~tiergate.cascade.types.Port` over the gateway's real parts.

Each step is one Executor call over the step's candidates (a tier's usable deployments,
or one model group), reserved with ``admission.admit(..., cascade_step=i)`` and settled
right after it with its actual cost. A step the budget cannot cover is not started; a
ticket's ``max_tier`` (soft limit) lowers the ceiling of the remaining steps.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tiergate.cascade.types import StepAnswer, StepRequest
from tiergate.config.cascades import CascadePolicy
from tiergate.config.catalog import Catalog, ModelSpec
from tiergate.errors import ModelNotFound, NoRouteAvailable
from tiergate.execution.executor import CallContext, Executor
from tiergate.limits.admission import Admission, AdmissionRequest, Outcome, Principal, Ticket
from tiergate.request import NOT_UPSTREAM
from tiergate.request.model_ref import parse_tier, resolve_alias
from tiergate.request.needs import RequestNeeds, needs_of


class AnswerScorer(Protocol):
    """A trained answer scorer (:class:`tiergate.routing.learned.serving.LearnedScorer`)."""

    target: float

    def target_for(self, req: Any, principal: Any = None) -> float: ...

    def score(self, body: Mapping[str, Any], answer: str, model: str | None) -> float | None: ...

    def threshold(self, target: float | None) -> float | None: ...


class CandidateSource(Protocol):
    def tier_candidates(self, tier: int, principal: Principal, needs: RequestNeeds
                        ) -> tuple[list[ModelSpec], list[tuple[str, str]]]: ...


@dataclass(frozen=True, slots=True)
class CascadeDeps:
    """What a cascade step reaches: the catalog, who may serve a tier, the executor, admission."""

    catalog: Catalog
    router: CandidateSource
    executor: Executor
    admission: Admission
    #: The learned answer scorer, when the router artifact has one.
    scorer: AnswerScorer | None = None


@dataclass(slots=True)
class _Lease:
    ticket: Ticket
    candidates: list[ModelSpec]
    started: float
    max_tier: int | None
    step: int = 0


class ServiceSteps:
    """One request's cascade port: targets resolved to deployments, budget reserved and
    settled per step, one Executor call per step."""

    def __init__(self, deps: CascadeDeps, policy: CascadePolicy, body: Mapping[str, Any], principal: Principal,
                 ctx: CallContext, task_type: str | None = None, needs: RequestNeeds | None = None,
                 policy_name: str | None = None) -> None:
        self.d = deps
        self.scorer = deps.scorer
        self.policy = policy
        self.policy_name = policy_name
        self.principal = principal
        self.ctx = ctx
        self.task_type = task_type
        self.upstream = {k: v for k, v in body.items() if k not in NOT_UPSTREAM}
        self.needs: RequestNeeds = needs or needs_of(body)
        self._cands: dict[str, list[ModelSpec]] = {}

    # --- targets --------------------------------------------------------------------

    def tier_of(self, target: str) -> int | None:
        name = resolve_alias(target, self.d.catalog.aliases)
        if name.startswith("tier:"):
            return parse_tier(name)
        group = self.d.catalog.groups.get(name)
        return group[0].tier if group else None

    def candidates(self, target: str) -> list[ModelSpec]:
        if target not in self._cands:
            name = resolve_alias(target, self.d.catalog.aliases)
            if name.startswith("tier:"):
                found, _ = self.d.router.tier_candidates(parse_tier(name), self.principal, self.needs)
            elif name in self.d.catalog.groups:
                found, _ = self.d.router.tier_candidates(self.d.catalog.groups[name][0].tier, self.principal,
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
        ticket = await self.d.admission.admit(self.principal, AdmissionRequest(
            request_id=f"{self.ctx.request_id}.{step.index}{step.purpose[0]}", deployment=spec,
            prompt_tokens=self.needs.prompt_tokens, max_output_tokens=out,
            estimate_usd=spec.cost_usd(self.needs.prompt_tokens, out), cascade_step=step.index))
        return _Lease(ticket, cands, time.perf_counter(), ticket.max_tier if ticket.soft_limited else None,
                      step.index)

    async def settle(self, lease: _Lease, answer: StepAnswer | None, error: BaseException | None) -> None:
        p = c = 0
        if answer is not None:
            u = answer.response.get("usage") or {}
            p, c = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
        code = (getattr(error, "code", None) or type(error).__name__) if error is not None else None
        await self.d.admission.settle(lease.ticket, Outcome(
            deployment=answer.deployment if answer else None, prompt_tokens=p, completion_tokens=c,
            cost_usd=answer.cost_usd if answer else 0.0, latency_ms=(time.perf_counter() - lease.started) * 1000,
            attempts=answer.attempts if answer else 0, outcome="ok" if answer else f"error:{code}",
            capability=self.task_type, cascade_policy=self.policy_name, cascade_step=lease.step,
            fallback=answer is not None and answer.deployment is not None
            and answer.deployment.deployment_id != lease.candidates[0].deployment_id))

    # --- answer -------------------------------------------------------------------------

    async def answer(self, step: StepRequest, lease: _Lease) -> StepAnswer:
        body = self.upstream if step.purpose == "answer" else {
            k: v for k, v in step.body.items() if k not in NOT_UPSTREAM}
        r = await self.d.executor.execute(lease.candidates, body, self.ctx, prompt_estimate=self.needs.prompt_tokens)
        usage = r.response.setdefault("usage", {})
        usage.setdefault("prompt_tokens", r.prompt_tokens)
        usage.setdefault("completion_tokens", r.completion_tokens)
        return StepAnswer(r.response, model=r.deployment.name, tier=r.deployment.tier, cost_usd=r.cost_usd,
                          latency_ms=r.latency_ms, attempts=len(r.attempts), deployment=r.deployment)


async def port_for_state(deps: CascadeDeps, state: Mapping[str, Any], *, deadline_s: float) -> ServiceSteps:
    """The port for a Step Functions task, from the state the state machine carries: the
    caller restored by admission (its key's budgets and allowed tiers apply as in process)."""
    from tiergate.cascade.steps import policy_of

    principal = await deps.admission.restore(dict(state.get("principal") or {}))
    ctx = CallContext(request_id=str(state.get("request_id") or "cascade"), deadline=time.monotonic() + deadline_s)
    return ServiceSteps(deps, policy_of(state), state["request"], principal, ctx, state.get("task_type"),
                        policy_name=(state.get("policy") or {}).get("name"))
