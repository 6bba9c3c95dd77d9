"""Choosing deployments: what ``model`` means, which tier, which fallbacks, and why.

``model`` may be a concrete model name (a group of deployments), an alias, ``tier:N``,
``auto`` (classify the task, pick the cheapest capable tier) or ``cascade[:policy]``.
The result is a :class:`RoutePlan`: the ordered fallback chain the executor walks, and a
reason a person can read (``x-tiergate-route-reason``, ``POST /v1/route``).

Every candidate satisfies the request's needs: the key's allowed tiers/models, required
capabilities (tools, vision, JSON), a usable credential and adapter, and a context window
that fits prompt + output with headroom. Deployments with an open circuit go last.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tiergate.config.base import MAX_TIER
from tiergate.config.catalog import Catalog, ModelSpec
from tiergate.errors import (
    CapabilityUnsupported,
    ContextWindowExceeded,
    InvalidRequest,
    ModelNotFound,
    NoRouteAvailable,
    PermissionDenied,
    PriceUnknown,
)
from tiergate.limits.admission import Principal
from tiergate.request import GatewayRequest
from tiergate.request.classify import TaskProfile
from tiergate.request.needs import RequestNeeds


@dataclass(frozen=True, slots=True)
class RoutePlan:
    mode: Literal["single", "cascade"]
    requested: str
    reason: str
    candidates: tuple[ModelSpec, ...] = ()
    tier: int | None = None
    task: TaskProfile | None = None
    needs: RequestNeeds | None = None
    cascade_policy: str | None = None
    skipped: tuple[tuple[str, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The explainable form served by ``POST /v1/route``."""
        return {
            "mode": self.mode,
            "requested_model": self.requested,
            "task_type": self.task.task_type if self.task else None,
            "difficulty": self.task.difficulty if self.task else None,
            "signals": list(self.task.signals) if self.task else [],
            "tier": self.tier,
            "cascade_policy": self.cascade_policy,
            "candidates": [
                {"model": c.name, "deployment": c.deployment_id, "tier": c.tier, "adapter": c.adapter,
                 "input_cost_per_mtok": c.input_cost_per_mtok, "output_cost_per_mtok": c.output_cost_per_mtok}
                for c in self.candidates
            ],
            "skipped": [{"deployment": d, "why": why} for d, why in self.skipped],
            "estimated_prompt_tokens": self.needs.prompt_tokens if self.needs else None,
            "reason": self.reason,
            "router": rules_block(self),
            **self.extra,
        }


def rules_block(plan: RoutePlan) -> dict[str, Any]:
    """``POST /v1/route``'s ``router`` block when no learned model decided (a learned plan
    puts its own in ``extra``)."""
    return {"kind": "rules", "predicted_quality": {}, "target": None,
            "chosen": plan.candidates[0].name if plan.candidates else None}


class LearnedPlanner(Protocol):
    """``auto`` from a trained artifact (:mod:`tiergate.routing.learned.serving`); returns
    None to leave the request to the rules."""

    def plan(self, router: Router, req: GatewayRequest, principal: Principal, max_tier: int | None
             ) -> RoutePlan | None: ...


class Router:
    """Turns a request into a :class:`RoutePlan`. Pure apart from the injected views of
    credential availability and circuit state."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        available: Callable[[ModelSpec], str | None] = lambda spec: None,
        circuit_open: Callable[[ModelSpec], bool] = lambda spec: False,
        rng: random.Random | None = None,
        learned: LearnedPlanner | None = None,
    ) -> None:
        self.catalog = catalog
        self.learned = learned
        self._unavailable = available   # returns why a deployment cannot be used, or None
        self._circuit_open = circuit_open
        self._rng = rng or random.Random()

    # --- public -------------------------------------------------------------------

    def plan(self, req: GatewayRequest, principal: Principal, *, max_tier: int | None = None) -> RoutePlan:
        """The plan for one request; ``max_tier`` is the budget's tier ceiling, known before planning."""
        ref, needs = req.ref, req.needs
        if ref.kind == "cascade":
            if req.operation != "chat":
                raise InvalidRequest(f"'{ref.requested}' scores chat answers; {req.operation} cannot cascade",
                                     param="model")
            return self._cascade_plan(req, ref.policy or "default")
        if ref.kind == "auto":
            return self._auto_plan(req, principal, max_tier)
        if ref.kind == "tier":
            assert ref.tier is not None
            return self._tier_plan(ref.requested, ref.tier, principal, needs, max_tier,
                                   why=f"{ref.requested} -> tier {ref.tier}")
        group = self.catalog.groups.get(ref.target)
        if group is None:
            raise ModelNotFound(f"The model '{ref.requested}' does not exist in this gateway's catalog", param="model")
        return self._model_plan(ref.requested, ref.target, group, principal, needs, max_tier)

    def tier_candidates(self, tier: int, principal: Principal, needs: RequestNeeds) -> tuple[list[ModelSpec], list[tuple[str, str]]]:
        """Usable deployments of one tier, ordered (weighted shuffle, open circuits last)."""
        ok, skipped = self._filter(self.catalog.in_tier(tier), principal, needs)
        return self._order(ok), skipped

    def usable(self, specs: Sequence[ModelSpec], principal: Principal, needs: RequestNeeds
               ) -> tuple[list[ModelSpec], list[tuple[str, str]]]:
        """The deployments among ``specs`` that can serve this request, and why the others cannot."""
        return self._filter(specs, principal, needs)

    def order(self, specs: list[ModelSpec]) -> list[ModelSpec]:
        """A group's deployments in the order to try them (weighted shuffle, open circuits last)."""
        return self._order(specs)

    # --- modes --------------------------------------------------------------------

    def _cascade_plan(self, req: GatewayRequest, policy: str) -> RoutePlan:
        if policy not in self.catalog.cascades:
            known = ", ".join(sorted(self.catalog.cascades)) or "none configured"
            raise ModelNotFound(f"Unknown cascade policy '{policy}' (known: {known})", param="model")
        return RoutePlan(mode="cascade", requested=req.ref.requested, reason=f"cascade policy '{policy}'",
                         task=req.task, needs=req.needs, cascade_policy=policy)

    def _auto_plan(self, req: GatewayRequest, principal: Principal, max_tier: int | None) -> RoutePlan:
        task = req.task
        policy = (self.catalog.routing.auto_cascade.get(task.task_type)  # type: ignore[arg-type]
                  if req.operation == "chat" else None)
        if policy:
            return RoutePlan(mode="cascade", requested=req.ref.requested, task=task, needs=req.needs,
                             cascade_policy=policy,
                             reason=f"auto: task={task.task_type} difficulty={task.difficulty} -> cascade '{policy}'")
        if req.operation == "embeddings":
            # No task to classify: the cheapest embedding model wins.
            wanted = self.catalog.tiers()[0]
            why = f"auto: embeddings -> cheapest tier {wanted}"
        else:
            if self.learned is not None:
                learned = self.learned.plan(self, req, principal, max_tier)
                if learned is not None:
                    return learned
            wanted = auto_tier(self.catalog, task)
            why = f"auto: task={task.task_type} difficulty={task.difficulty} -> tier {wanted}"
        plan = self._tier_plan(req.ref.requested, wanted, principal, req.needs, max_tier, why=why)
        return RoutePlan(**{**_fields(plan), "task": task})

    def _tier_plan(self, requested: str, tier: int, principal: Principal, needs: RequestNeeds,
                   max_tier: int | None, *, why: str) -> RoutePlan:
        tiers = self.catalog.tiers()
        # Cheapest capable: the wanted tier, then upward; if nothing at or above, downward.
        order = [t for t in tiers if t >= tier] + [t for t in reversed(tiers) if t < tier]
        order = _cap(order, max_tier)
        chain: list[ModelSpec] = []
        skipped: list[tuple[str, str]] = []
        first: int | None = None
        for t in order:
            ok, sk = self.tier_candidates(t, principal, needs)
            skipped += sk
            if ok and first is None:
                first = t
                chain += ok
            elif ok and first is not None and abs(t - first) <= self.catalog.routing.fallback_up_tiers and t > first:
                chain += ok  # fallback: up to N tiers above the chosen one
        if first is None:
            raise self._nothing_fits(requested, needs, skipped)
        notes = [why]
        if first != tier:
            why_not = "; ".join(f"{d}: {w}" for d, w in skipped if self.catalog.by_id[d].tier == tier)
            notes.append(f"tier {tier} had no usable deployment ({why_not or 'none configured'}); using tier {first}")
        if max_tier is not None and tier > max_tier:
            notes.append(f"capped at tier {max_tier} by budget")
        notes.append(f"chose {chain[0].name}")
        return RoutePlan(mode="single", requested=requested, tier=first, candidates=tuple(chain),
                         needs=needs, skipped=tuple(skipped), reason="; ".join(notes))

    def _model_plan(self, requested: str, name: str, group: Sequence[ModelSpec], principal: Principal,
                    needs: RequestNeeds, max_tier: int | None) -> RoutePlan:
        if not any(principal.may_use(s) for s in group):
            raise PermissionDenied(f"This key may not use model '{requested}'", param="model")
        embeds = "embeddings" in needs.capabilities
        if all(s.has("embeddings") != embeds for s in group):
            raise InvalidRequest(f"The model '{requested}' is an embedding model: use /v1/embeddings" if not embeds
                                 else f"The model '{requested}' does not create embeddings", param="model")
        own, skipped = self._filter(group, principal, needs)
        tier = group[0].tier
        if max_tier is not None and tier > max_tier:
            # Soft budget limit: downgrade to the best tier the budget allows.
            plan = self._tier_plan(requested, max_tier, principal, needs, max_tier,
                                   why=f"{requested} (tier {tier}) downgraded to tier <= {max_tier} by budget")
            return plan
        chain = self._order(own)
        fallback_tiers = [t for t in self.catalog.tiers() if tier <= t <= tier + self.catalog.routing.fallback_up_tiers]
        for t in _cap(fallback_tiers, max_tier):
            ok, sk = self._filter([s for s in self.catalog.in_tier(t) if s.name != name], principal, needs)
            skipped += sk
            chain += self._order(ok)
        if not own:
            if not chain:
                raise self._nothing_fits(requested, needs, skipped)
            why = f"{requested} unusable ({'; '.join(w for _, w in skipped[:2])}); falling back to {chain[0].name}"
        else:
            why = f"model {requested} requested"
        return RoutePlan(mode="single", requested=requested, tier=chain[0].tier, candidates=tuple(chain),
                         needs=needs, skipped=tuple(skipped), reason=why)

    # --- filters ------------------------------------------------------------------

    def _filter(self, specs: Sequence[ModelSpec], principal: Principal, needs: RequestNeeds
                ) -> tuple[list[ModelSpec], list[tuple[str, str]]]:
        ok: list[ModelSpec] = []
        skipped: list[tuple[str, str]] = []
        headroom = self.catalog.routing.context_headroom
        for s in specs:
            why: str | None = None
            if not principal.may_use(s):
                why = _NOT_ALLOWED
            elif principal.budgeted and not s.price_known:
                # Billed at $0, it would never count against the key's budget (admission refuses it too).
                why = _UNPRICED + " (this key has a budget)"
            elif ("embeddings" in needs.capabilities) != s.has("embeddings"):
                # Embedding models answer embeddings requests only, and only they do.
                why = "an embedding model" if s.has("embeddings") else "not an embedding model"
            elif (missing := needs.capabilities - (s.capabilities or frozenset())):
                why = f"lacks {', '.join(sorted(missing))}"
            elif s.context_window and needs.prompt_tokens + needs.output_reserve() > s.context_window * (1 - headroom):
                why = f"context {s.context_window} too small for ~{needs.prompt_tokens}+{needs.output_reserve()} tokens"
            else:
                why = self._unavailable(s)
            if why:
                skipped.append((s.deployment_id, why))
            else:
                ok.append(s)
        return ok, skipped

    def _missing_capabilities(self, needs: RequestNeeds, skipped: list[tuple[str, str]]) -> list[str]:
        """The capabilities that make this a client error: no deployment in the catalog has
        them, or every deployment considered was skipped only for lacking them."""
        if not needs.capabilities:
            return []
        if not any(needs.capabilities <= (s.capabilities or frozenset()) for s in self.catalog.models):
            return sorted(c for c in needs.capabilities
                          if not any(s.has(c) for s in self.catalog.models)) or sorted(needs.capabilities)
        if skipped and all(w.startswith("lacks ") for _, w in skipped):
            lacking = {c.strip() for _, w in skipped for c in w.removeprefix("lacks ").split(",")}
            return sorted(lacking)
        return []

    def _order(self, specs: list[ModelSpec]) -> list[ModelSpec]:
        if len(specs) > 1:
            # Weighted shuffle (load balancing across a group's deployments).
            specs = sorted(specs, key=lambda s: -self._rng.random() ** (1.0 / s.weight))
        return [s for s in specs if not self._circuit_open(s)] + [s for s in specs if self._circuit_open(s)]

    def _nothing_fits(self, requested: str, needs: RequestNeeds, skipped: list[tuple[str, str]]) -> Exception:
        details = {"skipped": [{"deployment": d, "why": w} for d, w in skipped]}
        missing = self._missing_capabilities(needs, skipped)
        if missing:
            return CapabilityUnsupported(
                f"No model available for '{requested}' supports {', '.join(missing)} "
                f"(asked by the request's {_PARAM_OF.get(missing[0], missing[0])})",
                param=_PARAM_OF.get(missing[0]), missing=missing, **details)
        # Deployments of the other kind (embedding vs chat) say nothing about this request.
        relevant = [w for _, w in skipped if w not in ("an embedding model", "not an embedding model")]
        if relevant and all(w.startswith("context") for w in relevant):
            return ContextWindowExceeded(
                f"The prompt (~{needs.prompt_tokens} tokens) plus {needs.output_reserve()} output tokens fits no "
                f"model available for '{requested}'", param="messages", **details)
        if any(w.startswith(_UNPRICED) for _, w in skipped) and all(
                w.startswith(_UNPRICED) or w == _NOT_ALLOWED for _, w in skipped):
            return PriceUnknown(
                f"No model available for '{requested}' has a known price, and this key has a budget: it would be "
                "billed $0 and never count against it. Set input_cost_per_mtok and output_cost_per_mtok in the "
                "catalog, or choose a priced model", param="model", **details)
        why = "; ".join(f"{d}: {w}" for d, w in skipped[:6]) or "no models configured"
        if any(w.startswith(("context", _UNPRICED)) for w in relevant) and all(_client_side(w) for w in relevant):
            # Each deployment refused for a reason of the request's or the key's own (a mix of
            # the single-reason cases above): nothing is down, so this is not a 503.
            return InvalidRequest(f"No model available for '{requested}' can take this request ({why})",
                                  param="model", code="no_model_fits", **details)
        return NoRouteAvailable(f"No deployment can serve '{requested}' ({why})", **details)


_UNPRICED = "no known price"
_NOT_ALLOWED = "not allowed for this key"


def _client_side(why: str) -> bool:
    """A skip reason that is the request's or the key's, not the gateway's (see _nothing_fits)."""
    return why.startswith(("context", _UNPRICED, "lacks ")) or why == _NOT_ALLOWED

#: The request field that asks for each capability (the error's ``param``).
_PARAM_OF = {"tools": "tools", "json": "response_format", "json_schema": "response_format", "vision": "messages"}


def auto_tier(catalog: Catalog, task: TaskProfile) -> int:
    """The tier ``auto`` starts from: the task type's tier, one higher when hard."""
    base = catalog.routing.task_tiers.get(task.task_type, 1)  # type: ignore[call-overload]
    return min(base + (1 if task.difficulty == "hard" else 0), MAX_TIER)


def _cap(tiers: list[int], max_tier: int | None) -> list[int]:
    if max_tier is None:
        return tiers
    capped = [t for t in tiers if t <= max_tier]
    return capped or tiers  # nothing cheap enough: the budget check will decide


def _fields(plan: RoutePlan) -> dict[str, Any]:
    return {f: getattr(plan, f) for f in plan.__dataclass_fields__}
