"""The catalog's ``budgets`` section (owned by the budgets work; see issue 6).

Scopes are *key* (limits live on the virtual key record), *tenant* (defaults here, with
per-tenant overrides) and *global*. Periods are per request (seed 002's
``max_cost_per_task``), UTC day and UTC month. A global monthly budget may be split into
per-tier allocations (seed 004: 15/50/25/10 %). All amounts are USD.

Example::

    budgets:
      soft_limit_fraction: 0.8
      global: {monthly_usd: 70, max_cost_per_request_usd: 0.5}
      tenant_defaults: {daily_usd: 10}
      tenants: {acme: {daily_usd: 25, monthly_usd: 300}}
      tier_allocations: {0: 0.15, 1: 0.50, 2: 0.25, 3: 0.10}
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from tiergate.config.base import Strict, Tier


class ScopeLimits(Strict):
    """Spend limits of one scope; ``None`` means unlimited."""

    max_cost_per_request_usd: float | None = Field(None, gt=0)
    daily_usd: float | None = Field(None, gt=0)
    monthly_usd: float | None = Field(None, gt=0)


class BudgetsConfig(Strict):
    #: Fraction of a limit past which requests are downgraded to a cheaper tier.
    soft_limit_fraction: float = Field(0.8, gt=0, le=1)
    global_: ScopeLimits = Field(default_factory=ScopeLimits, alias="global")
    #: Limits for every tenant without an entry in ``tenants``.
    tenant_defaults: ScopeLimits = Field(default_factory=ScopeLimits)
    tenants: dict[str, ScopeLimits] = Field(default_factory=dict)
    #: Shares of the global monthly budget per tier (seed 004). Tiers left out are unlimited.
    tier_allocations: dict[Tier, float] = Field(default_factory=dict)
    #: A reservation not settled within this time is an orphan: its request died with an
    #: unknown outcome, so it is charged at the reservation and recorded (never refunded).
    reservation_ttl_s: int = Field(900, ge=10)
    #: Reserve the prompt at our estimate x (1 + margin) + margin tokens: the estimate is
    #: ~4 characters a token, the provider's tokenizer differs (see limits/estimate.py).
    prompt_margin: float = Field(0.25, ge=0, le=10)
    prompt_margin_tokens: int = Field(16, ge=0)
    #: How often a long-lived process looks for orphaned reservations (0: only at startup
    #: and on a budget rejection).
    orphan_sweep_s: float = Field(120.0, ge=0)
    #: How long usage records are kept (DynamoDB TTL / SQLite purge).
    usage_retention_days: int = Field(90, ge=1)
    #: How long a completed idempotent response is replayed.
    idempotency_ttl_s: int = Field(24 * 3600, ge=60)
    #: How long a duplicate waits for the first request before getting 409.
    idempotency_wait_s: float = Field(0.0, ge=0, le=600)
    #: The first request's in-progress lease, renewed while it runs: a dead holder's key
    #: is free again within this time.
    idempotency_lease_s: float = Field(15.0, ge=1, le=600)

    @field_validator("tier_allocations")
    @classmethod
    def _shares(cls, v: dict[int, float]) -> dict[int, float]:
        if any(s <= 0 or s > 1 for s in v.values()):
            raise ValueError("each tier allocation must be in (0, 1]")
        if sum(v.values()) > 1.000001:
            raise ValueError(f"tier allocations add up to {sum(v.values()):.3f} > 1")
        return v

    @model_validator(mode="after")
    def _allocations_need_a_month(self) -> BudgetsConfig:
        if self.tier_allocations and self.global_.monthly_usd is None:
            raise ValueError("tier_allocations split global.monthly_usd, which is not set")
        return self

    def tenant(self, name: str) -> ScopeLimits:
        return self.tenants.get(name, self.tenant_defaults)
