"""The admission seam: who is calling, may they, and what did it cost.

The request path calls, in order: :meth:`Admission.authenticate` (bearer key ->
:class:`Principal`), :meth:`Admission.admit` once per upstream attempt chain
(rate limits + budget reservation: at most two store round trips before the upstream
call) and :meth:`Admission.settle` once per admitted ticket (actual cost replaces the
reservation; the usage record is written). ``settle`` is durable when it returns (the
gateway awaits it before the response is acknowledged), so a crash afterwards loses nothing.

Implementations: :class:`~tiergate.limits.master_key.MasterKeyAdmission` (no store: a
master key or none, no limits, usage in memory) and
:class:`~tiergate.limits.store_admission.StoreAdmission` (virtual keys, rate limits,
budgets and the usage ledger on a record store).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from tiergate.config.catalog import ModelSpec


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    tenant: str = "default"
    is_master: bool = False
    #: None means every tier / model.
    allowed_tiers: frozenset[int] | None = None
    allowed_models: frozenset[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """The principal as JSON (a Step Functions state carries it to the cascade tasks,
        which restore it with :meth:`Admission.restore`)."""
        return {"key_id": self.key_id, "tenant": self.tenant, "is_master": self.is_master,
                "allowed_tiers": sorted(self.allowed_tiers) if self.allowed_tiers is not None else None,
                "allowed_models": sorted(self.allowed_models) if self.allowed_models is not None else None}

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> Principal:
        tiers, models = snap.get("allowed_tiers"), snap.get("allowed_models")
        return cls(key_id=str(snap.get("key_id", "cascade")), tenant=str(snap.get("tenant", "default")),
                   is_master=bool(snap.get("is_master", False)),
                   allowed_tiers=frozenset(int(t) for t in tiers) if tiers is not None else None,
                   allowed_models=frozenset(str(m) for m in models) if models is not None else None)

    def may_use(self, spec: ModelSpec) -> bool:
        if self.allowed_tiers is not None and spec.tier not in self.allowed_tiers:
            return False
        if self.allowed_models is not None and spec.name not in self.allowed_models:
            return False
        return True


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    request_id: str
    deployment: ModelSpec
    prompt_tokens: int          # estimate
    max_output_tokens: int      # what the request may produce at most
    #: Worst-case cost (prompt x input price + max output x output price).
    estimate_usd: float
    #: Set when the request is one step of a cascade.
    cascade_step: int | None = None
    #: A call that costs nothing (``/v1/messages/count_tokens``): only the key's
    #: requests-per-minute limit applies -- no budget reservation, no token limits, no
    #: deployment quota (Anthropic meters token counting apart from generation).
    free: bool = False


@dataclass(slots=True)
class Ticket:
    """A successful admission: a reservation to be settled exactly once."""

    request_id: str
    principal: Principal
    deployment: ModelSpec
    reserved_usd: float
    reserved_tokens: int
    #: Soft budget limit crossed: the caller should prefer a cheaper tier.
    soft_limited: bool = False
    #: Tier ceiling the budget state suggests (soft limit / tier allocation), if any.
    max_tier: int | None = None
    #: The most used budget limit after this reservation, in percent (for the 80% alarm).
    budget_utilization_percent: float | None = None
    #: Headers for the response (x-ratelimit-*, x-tiergate-budget).
    headers: dict[str, str] = field(default_factory=dict)
    #: Store-specific reservation handles (which counters to settle).
    handles: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What actually happened, for settlement and the usage ledger."""

    deployment: ModelSpec | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    attempts: int
    outcome: str                 # "ok" | "error:<code>" | "cache_hit"
    cache_hit: bool = False
    capability: str | None = None  # the task type, for /metrics
    #: A cache hit: what the answer cost when it was produced (the hit itself costs 0).
    saved_usd: float = 0.0
    #: Streams: time from admission to the first chunk (the dashboard's and metrics' TTFT).
    ttft_ms: float | None = None
    #: Answered by a deployment other than the plan's first (the executor fell back).
    fallback: bool = False
    #: Set when the request is one step of a cascade: the policy's name and the step's index.
    cascade_policy: str | None = None
    cascade_step: int | None = None
    #: What the call was when it was not a generation (``"count_tokens"``); the usage record says so.
    operation: str | None = None


class Admission(Protocol):
    async def authenticate(self, authorization: str | None) -> Principal: ...

    async def admit(self, principal: Principal, req: AdmissionRequest) -> Ticket: ...

    async def settle(self, ticket: Ticket, outcome: Outcome) -> None: ...

    def tier_ceiling(self, principal: Principal) -> int | None:
        """The tier ceiling the budget suggests for this caller (soft limit), if known without
        a store round trip: asked before planning, so a request is planned once."""
        ...

    async def restore(self, snapshot: dict[str, Any]) -> Principal:
        """The principal a :meth:`Principal.snapshot` was taken of, with what its limits need
        (a virtual key's budgets): how a cascade task on Step Functions acts as the caller."""
        ...

    async def aclose(self) -> None: ...


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def new_request_id() -> str:
    return "chatcmpl-tg-" + uuid.uuid4().hex[:24]
