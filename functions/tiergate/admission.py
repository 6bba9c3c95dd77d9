"""The admission seam: who is calling, may they, and what did it cost.

The request path calls, in order: :meth:`Admission.authenticate` (bearer key ->
:class:`Principal`), :meth:`Admission.admit` once per upstream attempt chain
(rate limits + budget reservation: at most two store round trips before the upstream
call) and :meth:`Admission.settle` once per admitted ticket (actual cost replaces the
reservation; the usage record is written). ``settle`` runs off the response's critical
path and must not lose the record if the process dies (write-ahead or retry).

:class:`MasterKeyAdmission` is the no-store implementation: a master key (or none,
for local-only binding), no limits, usage kept in memory. The budgets work
(``tiergate.limits``) provides the store-backed one.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from tiergate.catalog import ModelSpec
from tiergate.errors import AuthenticationFailed


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    tenant: str = "default"
    is_master: bool = False
    #: None means every tier / model.
    allowed_tiers: frozenset[int] | None = None
    allowed_models: frozenset[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

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


class Admission(Protocol):
    async def authenticate(self, authorization: str | None) -> Principal: ...

    async def admit(self, principal: Principal, req: AdmissionRequest) -> Ticket: ...

    async def settle(self, ticket: Ticket, outcome: Outcome) -> None: ...

    async def aclose(self) -> None: ...


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class MasterKeyAdmission:
    """Master key only, no limits; the last usage records kept in memory."""

    def __init__(self, master_key: str | None, *, keep: int = 10_000) -> None:
        self._master = master_key
        self.records: deque[dict[str, Any]] = deque(maxlen=keep)

    async def authenticate(self, authorization: str | None) -> Principal:
        if self._master is None:
            # No key configured: the server binds to loopback only (see cli.serve).
            return Principal(key_id="local", tenant="local", is_master=True)
        token = bearer_token(authorization)
        if token is None:
            raise AuthenticationFailed("Missing bearer token: send 'Authorization: Bearer <key>'")
        if not hmac.compare_digest(token.encode(), self._master.encode()):
            raise AuthenticationFailed("Invalid API key")
        return Principal(key_id="master", tenant="master", is_master=True)

    async def admit(self, principal: Principal, req: AdmissionRequest) -> Ticket:
        return Ticket(
            request_id=req.request_id, principal=principal, deployment=req.deployment,
            reserved_usd=req.estimate_usd, reserved_tokens=req.prompt_tokens + req.max_output_tokens,
        )

    async def settle(self, ticket: Ticket, outcome: Outcome) -> None:
        self.records.append({
            "request_id": ticket.request_id, "key_id": ticket.principal.key_id,
            "tenant": ticket.principal.tenant,
            "model": outcome.deployment.name if outcome.deployment else None,
            "tier": outcome.deployment.tier if outcome.deployment else None,
            "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
            "cost_usd": outcome.cost_usd, "latency_ms": outcome.latency_ms,
            "attempts": outcome.attempts, "outcome": outcome.outcome, "cache_hit": outcome.cache_hit,
            "ts": time.time(),
        })

    async def aclose(self) -> None:
        return None


def new_request_id() -> str:
    return "chatcmpl-tg-" + uuid.uuid4().hex[:24]
