"""The edge's router: the core's request analysis plus the offload policy.

It reuses the core's :func:`~tiergate.routing.plan.needs_of` (prompt size, requested
output, capabilities) and :func:`~tiergate.request.classify.classify` with the catalog's
``task_tiers`` for the task's tier, asks :func:`tiergate_edge.offload.decide` where to
answer, and returns a core :class:`~tiergate.routing.plan.RoutePlan` whose candidates
are the local deployment and/or the cloud (the ``openai-compatible`` deployment whose
``upstream_model`` is what the client asked for), in fallback order. When only the cloud
can answer and it is down, it raises :class:`~tiergate.errors.OffloadUnavailable` (the
chat route answers 503, or 202 with a job id when the client allows deferral).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tiergate.config.catalog import Catalog, ModelSpec
from tiergate.errors import (
    CapabilityUnsupported,
    ContextWindowExceeded,
    InvalidRequest,
    NoRouteAvailable,
    OffloadUnavailable,
)
from tiergate.limits.admission import Principal
from tiergate.request import GatewayRequest, ModelRef
from tiergate.request.classify import TaskProfile
from tiergate.request.needs import RequestNeeds
from tiergate.routing.learned.model import ALWAYS_REFERENCE, choose
from tiergate.routing.learned.serving import LearnedRouting
from tiergate.routing.plan import RoutePlan, auto_tier
from tiergate_edge.offload import OVERRIDES, Decision, LocalState, OffloadRequest, decide

OFFLOAD_HEADER = "x-tiergate-offload"


@dataclass(frozen=True, slots=True)
class Target:
    """What the request asks for, seen from the edge."""

    task_tier: int
    upstream_model: str   # what the cloud is asked for
    why: str
    forced_local: bool = False
    #: The learned decision (``POST /v1/route``'s ``router`` block), when the artifact made it.
    router: dict[str, Any] | None = None


class EdgeRouter:
    def __init__(self, catalog: Catalog, *, local: ModelSpec, cloud: ModelSpec | None,
                 cloud_up: Callable[[], bool], local_context: Callable[[ModelSpec], int],
                 policy: str = "prefer-local", headroom: float = 0.05, default_max_tokens: int = 512,
                 escalate_policy: str | None = None, learned: LearnedRouting | None = None) -> None:
        self.catalog = catalog
        #: A router artifact whose outcome keys include the local model: it decides local vs cloud.
        self.learned = learned
        #: Cascade policy (local, then cloud) used when the local answer should be scored.
        self.escalate_policy = escalate_policy
        self.local = local
        self.cloud = cloud
        self._cloud_up = cloud_up
        self._local_context = local_context
        self.policy = policy
        self._headroom = headroom
        self._default_max = default_max_tokens

    def target(self, ref: ModelRef, task: TaskProfile | None, req: GatewayRequest | None = None) -> Target:
        if ref.kind == "model" and ref.target == self.local.name:
            return Target(self.local.tier, "auto", f"model {ref.requested} (local) requested", forced_local=True)
        if ref.kind == "auto" and req is not None and (learned := self.learned_target(req)) is not None:
            return learned
        if ref.kind == "auto":
            assert task is not None
            tier = auto_tier(self.catalog, task)
            return Target(tier, "auto", f"auto: task={task.task_type} difficulty={task.difficulty} -> tier {tier}")
        if ref.kind == "tier":
            return Target(int(ref.tier or 0), ref.target, f"{ref.requested} -> tier {ref.tier}")
        # Any other name is a cloud model (or cascade): the cloud's catalog decides.
        return Target(4, ref.requested, f"model {ref.requested} is a cloud model")

    def learned_target(self, req: GatewayRequest) -> Target | None:
        """Local vs cloud by the artifact: stay local when the local model's predicted quality
        is within the calibrated margin of the best other outcome model's (the local model
        costs nothing here), else offload. None when no artifact knows the local model."""
        a = self.learned.current() if self.learned is not None else None
        if a is None or self.local.name not in a.models:
            return None
        assert self.learned is not None
        target = self.learned.target_for(req)
        pred = a.predict(req.messages, req.body)
        margin = a.margin(target)
        costs = {m: 0.0 if m == self.local.name else 1.0 for m in pred}
        stay = choose(pred, costs, ALWAYS_REFERENCE if margin is None else margin, a.reference) == self.local.name
        best = max((q, m) for m, q in pred.items() if m != self.local.name)
        why = (f"auto (learned {a.id}): predicted {self.local.name} {pred[self.local.name]:.2f} vs {best[1]} "
               f"{best[0]:.2f}; target {target:g} -> {'stay local' if stay else 'offload'}")
        tier = self.local.tier if stay else min(4, max(self.local.tier + 1, auto_tier(self.catalog, req.task)))
        block = {"kind": "learned", "artifact": a.id, "target": target,
                 "predicted_quality": {m: round(q, 4) for m, q in pred.items()},
                 "margin": None if margin is None or margin < 0 else round(margin, 4), "reference": a.reference,
                 "chosen": self.local.name if stay else (self.cloud.name if self.cloud else best[1])}
        return Target(tier, "auto", why, router=block)

    def state(self) -> LocalState:
        return LocalState(
            local_tier=self.local.tier, local_context=self._local_context(self.local),
            local_capabilities=frozenset(self.local.capabilities or ()),
            cloud_configured=self.cloud is not None, cloud_up=self.cloud is not None and self._cloud_up(),
            headroom=self._headroom)

    def decide(self, req: GatewayRequest) -> tuple[Decision, Target]:
        override = req.hint(OFFLOAD_HEADER, "auto").strip().lower()
        if override not in OVERRIDES:
            raise InvalidRequest(f"{OFFLOAD_HEADER} must be one of {', '.join(OVERRIDES)}", param=OFFLOAD_HEADER)
        needs = req.needs
        target = self.target(req.ref, req.task if req.ref.kind == "auto" else None, req)
        if target.forced_local and override == "auto":
            override = "local"
        oreq = OffloadRequest(task_tier=target.task_tier, prompt_tokens=needs.prompt_tokens,
                              max_output_tokens=needs.max_output_tokens or self.local.max_output_tokens
                              or self._default_max, capabilities=needs.capabilities)
        return decide(oreq, self.state(), policy=self.policy, override=override), target

    def cloud_spec(self, target: Target) -> ModelSpec:
        assert self.cloud is not None
        tier = min(4, max(target.task_tier, self.local.tier + 1))
        return self.cloud.model_copy(update={"upstream_model": target.upstream_model, "tier": tier})

    def plan(self, req: GatewayRequest, principal: Principal, *, max_tier: int | None = None) -> RoutePlan:
        if req.operation == "embeddings":
            return self._embeddings_plan(req, principal)
        d, target = self.decide(req)
        task = req.task if req.ref.kind in ("auto", "cascade") else None
        needs = req.needs
        reason = f"{target.why}; {d.reason}"
        if not d.targets:
            missing = sorted(needs.capabilities - frozenset(self.local.capabilities or ()))
            if missing and self.cloud is None:
                # Nothing here can do it, and no cloud is configured: the request's fault, not ours.
                raise CapabilityUnsupported(f"The local model does not support {', '.join(missing)} and no cloud "
                                            f"gateway is configured ({reason})", missing=missing)
            if d.needs_cloud and self.cloud is None:
                raise NoRouteAvailable(f"No cloud gateway is configured and the local model cannot serve this "
                                       f"request ({reason})")
            if d.needs_cloud:
                raise OffloadUnavailable(f"The cloud is needed for this request but unreachable ({reason})",
                                         route_reason=reason)
            if not d.local_capable and needs.capabilities - frozenset(self.local.capabilities or ()):
                raise NoRouteAvailable(f"The local model cannot serve this request ({reason})")
            raise ContextWindowExceeded(f"The request does not fit the local model ({reason})", param="messages")
        chain = [self.local if t == "local" else self.cloud_spec(target) for t in d.targets]
        chain = [s for s in chain if principal.may_use(s)]
        if not chain:
            raise NoRouteAvailable(f"This key may not use the deployments chosen ({reason})")
        requested = req.ref.requested
        if self.escalate_policy and len(chain) > 1 and chain[0] is self.local and not req.stream:
            # Local first with the cloud reachable: score the local answer and escalate a weak
            # one (empty, truncated, refused, malformed) to the cloud through the cascade engine.
            return RoutePlan(mode="cascade", requested=requested, cascade_policy=self.escalate_policy,
                             reason=f"{reason}; local answer scored, weak answers escalate to the cloud",
                             candidates=tuple(chain), tier=chain[0].tier, task=task, needs=needs,
                             extra={"router": target.router} if target.router else {})
        extra: dict[str, Any] = {"offload": {"policy": self.policy, "targets": list(d.targets),
                                             "cloud_up": self.state().cloud_up, "upstream_model": target.upstream_model}}
        if target.router:
            extra["router"] = {**target.router, "chosen": chain[0].name}
        return RoutePlan(mode="single", requested=requested,
                         reason=reason, candidates=tuple(chain), tier=chain[0].tier, task=task, needs=needs,
                         extra=extra)

    def _embeddings_plan(self, req: GatewayRequest, principal: Principal) -> RoutePlan:
        """Embeddings: the local embedder (``auto`` or its own name), the cloud for any other
        model or when asked (``x-tiergate-offload: cloud``); each falls back to the other."""
        override = req.hint(OFFLOAD_HEADER, "auto").strip().lower()
        if override not in OVERRIDES:
            raise InvalidRequest(f"{OFFLOAD_HEADER} must be one of {', '.join(OVERRIDES)}", param=OFFLOAD_HEADER)
        local = [s for s in self.catalog.models if s.has("embeddings") and principal.may_use(s)]
        ref = req.ref
        named_local = ref.kind == "auto" or (ref.kind == "model" and any(s.name == ref.target for s in local))
        cloud_up = self.cloud is not None and self._cloud_up()
        cloud = [self.cloud_spec(Target(4, "auto" if ref.kind == "auto" else ref.requested, ""))] if cloud_up else []
        cloud = [s for s in cloud if principal.may_use(s)]
        if override == "cloud" or not named_local:
            chain, why = cloud + ([] if not named_local else local), "embeddings offloaded to the cloud"
        else:
            chain, why = local + ([] if override == "local" else cloud), "embeddings answered locally"
        if not chain:
            if self.cloud is not None and not cloud_up:
                raise OffloadUnavailable(f"The cloud is needed to embed with '{ref.requested}' but unreachable",
                                         route_reason="embeddings need the cloud")
            raise NoRouteAvailable(f"No embedding model can serve '{ref.requested}' on this device")
        return RoutePlan(mode="single", requested=ref.requested, reason=why, candidates=tuple(chain),
                         tier=chain[0].tier, needs=req.needs)

    def tier_candidates(self, tier: int, principal: Principal, needs: RequestNeeds
                        ) -> tuple[list[ModelSpec], list[tuple[str, str]]]:
        """The cascade runner's view of a tier: the deployments there this key may use."""
        specs = [s for s in self.catalog.in_tier(tier) if principal.may_use(s)]
        return specs, [(s.deployment_id, "not allowed for this key") for s in self.catalog.in_tier(tier)
                       if s not in specs]

    def upstream_body(self, req: GatewayRequest) -> dict[str, Any]:
        """The body a deferred job sends to the cloud: the model the cloud should route."""
        out = {k: v for k, v in req.body.items() if k not in ("stream", "stream_options")}
        out["model"] = self.target(req.ref, req.task if req.ref.kind == "auto" else None, req).upstream_model
        return out
