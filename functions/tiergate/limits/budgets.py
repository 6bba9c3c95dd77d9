"""Budget scopes, periods and the decisions made from their counters.

A request on tier *t* by key *k* of tenant *n* is checked against every configured limit:
key/tenant/global x day/month (UTC), the tier's share of the global monthly budget, and
the per-request maxima. Each periodic limit is one counter (``budgets`` table,
``pk = b#<scope>#<id>``, ``sk = d2025-01-31 | m2025-01``) whose ``used`` is settled plus
reserved spend in nano-USD; the worst-case estimate is reserved with a hold and the
condition ``used <= limit - estimate``. Unlimited scopes have no counter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tiergate.config.budgets import BudgetsConfig, ScopeLimits
from tiergate.config.catalog import ModelSpec
from tiergate.errors import BudgetExceeded, PermissionDenied, PriceUnknown
from tiergate.limits.admission import Principal
from tiergate.limits.virtual_keys import DASHBOARD_SCOPE, KeyService, VirtualKey, has_scope
from tiergate.stores.base import Bump, CounterKey, CounterState, RecordStore

NANO = 1_000_000_000
TABLE = "budgets"


def to_nano(usd: float) -> int:
    """USD -> integer nano-USD, rounded up (a reservation never under-reserves)."""
    return max(0, math.ceil(round(usd * NANO, 3)))


def to_usd(nano: int) -> float:
    return round(nano / NANO, 9)


def period_bounds(period: str, now: float) -> tuple[str, int]:
    """(period id, end as epoch seconds) of the UTC day or month containing ``now``."""
    t = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        return "d" + start.strftime("%Y-%m-%d"), int((start + timedelta(days=1)).timestamp())
    start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (start + timedelta(days=32)).replace(day=1)
    return "m" + start.strftime("%Y-%m"), int(nxt.timestamp())


@dataclass(frozen=True, slots=True)
class BudgetScope:
    scope: str        # "key" | "tenant" | "global" | "tier"
    scope_id: str     # key id | tenant | "all" | tier number
    period: str       # "day" | "month"
    limit_usd: float
    period_id: str
    period_end: int

    @property
    def key(self) -> CounterKey:
        return CounterKey(TABLE, f"b#{self.scope}#{self.scope_id}", self.period_id)

    @property
    def limit(self) -> int:
        return to_nano(self.limit_usd)

    def bump(self, amount: int, hold_id: str, hold_expires_at: int, meta: str | None = None) -> Bump:
        # Keep the counter a week past its period so reports can still read it.
        return Bump(self.key, amount, self.limit - amount, self.period_end + 7 * 86400, hold_id, hold_expires_at,
                    meta)

    def describe(self) -> dict[str, Any]:
        return {"scope": self.scope, "id": self.scope_id, "period": self.period, "period_id": self.period_id[1:]}


def _limits_of(key: VirtualKey | None) -> ScopeLimits:
    if key is None:
        return ScopeLimits()
    return ScopeLimits(max_cost_per_request_usd=key.max_cost_per_request_usd,
                       daily_usd=key.daily_budget_usd, monthly_usd=key.monthly_budget_usd)


def _subjects(cfg: BudgetsConfig, key: VirtualKey | None, tenant: str | None) -> list[tuple[str, str, ScopeLimits]]:
    out = []
    if key is not None:
        out.append(("key", key.key_id, _limits_of(key)))
    if tenant is not None:
        out.append(("tenant", tenant, cfg.tenant(tenant)))
    out.append(("global", "all", cfg.global_))
    return out


def scopes(cfg: BudgetsConfig, *, key: VirtualKey | None, tenant: str | None, tier: int | None,
           now: float) -> list[BudgetScope]:
    """The periodic limits a request must fit (``tenant=None``: the master, no tenant scope;
    ``tier=None``: every tier allocation, for reports)."""
    out: list[BudgetScope] = []
    for scope, sid, lim in _subjects(cfg, key, tenant):
        for period, limit in (("day", lim.daily_usd), ("month", lim.monthly_usd)):
            if limit is not None:
                out.append(BudgetScope(scope, sid, period, limit, *period_bounds(period, now)))
    month = cfg.global_.monthly_usd
    for t, share in sorted(cfg.tier_allocations.items()):
        if month is not None and (tier is None or t == tier):
            out.append(BudgetScope("tier", str(t), "month", month * share, *period_bounds("month", now)))
    return out


def check_per_request(cfg: BudgetsConfig, *, key: VirtualKey | None, tenant: str | None, estimate_usd: float) -> None:
    """Seed 002's ``max_cost_per_task``: no store needed."""
    for scope, _sid, lim in _subjects(cfg, key, tenant):
        cap = lim.max_cost_per_request_usd
        if cap is not None and estimate_usd > cap:
            raise BudgetExceeded(
                f"Request may cost up to ${estimate_usd:.6f}, over the {scope} per-request limit of ${cap:.6f}; "
                "lower max_tokens or choose a cheaper model",
                scope=scope, period="request", limit=cap, spent=0.0, estimate=round(estimate_usd, 9))


def refuse_unpriced(cfg: BudgetsConfig, dep: ModelSpec, *, key: VirtualKey | None, tenant: str | None,
                    periodic: list[BudgetScope]) -> None:
    """A deployment with no known price would be billed $0 under every budget that applies,
    so no budget would ever count it: refuse it when any budget (a periodic one or a
    per-request cap, of the key, its tenant or the gateway) applies to this request. The
    catalog's own budgets already refuse unpriced models when the file loads; a virtual
    key's budgets are only known here."""
    if dep.price_known:
        return
    under = [f"{s.scope} {'daily' if s.period == 'day' else 'monthly'}" if s.scope != "tier"
             else f"tier {s.scope_id} allocation" for s in periodic]
    under += [f"{scope} per-request" for scope, _sid, lim in _subjects(cfg, key, tenant)
              if lim.max_cost_per_request_usd is not None]
    if not under:
        return
    raise PriceUnknown(
        f"Model {dep.name!r} (deployment {dep.deployment_id}) has no known price, and this request is under a "
        f"budget ({', '.join(dict.fromkeys(under))}): it would be billed $0 and never count against it. "
        "Set input_cost_per_mtok and output_cost_per_mtok for it in the catalog, or choose a priced model",
        param="model", deployment=dep.deployment_id)


def exceeded(s: BudgetScope, used: int, estimate: int) -> BudgetExceeded:
    what = f"tier {s.scope_id} allocation" if s.scope == "tier" else f"{s.scope} {s.period}ly budget"
    what = what.replace("dayly", "daily")
    return BudgetExceeded(
        f"Budget exceeded: the {what} of ${s.limit_usd:.2f} has ${to_usd(used):.6f} spent or reserved; "
        f"this request may cost up to ${to_usd(estimate):.6f}",
        scope=s.scope, period=s.period, limit=s.limit_usd, spent=to_usd(used), estimate=to_usd(estimate),
        **({"tier": int(s.scope_id)} if s.scope == "tier" else {}))


@dataclass(frozen=True, slots=True)
class SoftState:
    soft: bool
    max_tier: int | None
    header: str | None
    #: The most used limit among the scopes, in percent (None without limits).
    utilization_percent: float | None = None


def soft_state(ss: list[BudgetScope], used: list[int], fraction: float, tier: int) -> SoftState:
    """Past ``fraction`` of any limit: suggest the tier below (the tier's own allocation
    being past its soft limit says the same), and say why in ``x-tiergate-budget``."""
    worst: tuple[float, BudgetScope] | None = None
    top: float | None = None
    for s, u in zip(ss, used, strict=True):
        frac = u / s.limit if s.limit else 1.0
        top = frac if top is None else max(top, frac)
        if frac > fraction and (worst is None or frac > worst[0]):
            worst = (frac, s)
    util = round(100 * top, 2) if top is not None else None
    if worst is None:
        return SoftState(False, None, None, util)
    frac, s = worst
    header = f"soft-limit; scope={s.scope}; period={s.period}; used={100 * frac:.1f}%"
    return SoftState(True, max(0, tier - 1), header, util)


async def report(store: RecordStore, cfg: BudgetsConfig, *, key: VirtualKey | None, tenant: str | None,
                 now: float) -> list[dict[str, Any]]:
    """Limits, spent, reserved and remaining per scope/period/tier (``GET /v1/budget``)."""
    ss = scopes(cfg, key=key, tenant=tenant, tier=None, now=now)
    states = await store.read_counters([s.key for s in ss])
    out = []
    for s in ss:
        st = states.get(s.key, CounterState())
        out.append({**s.describe(), "limit_usd": s.limit_usd, "spent_usd": to_usd(st.used - st.reserved),
                    "reserved_usd": to_usd(st.reserved), "remaining_usd": to_usd(max(0, s.limit - st.used)),
                    "utilization_percentage": round(100 * st.used / s.limit, 2) if s.limit else None})
    return out


async def subject(principal: Principal, keys: KeyService, *, tenant: str | None,
                  key_id: str | None) -> tuple[VirtualKey | None, str | None]:
    """Whose budgets a caller may read: the master any key's or tenant's (default: global
    only); a dashboard key its tenant's (and its keys'); any other key its own."""
    if principal.is_master:
        key = await keys.get(key_id) if key_id else None
        return key, key.tenant if key is not None else tenant
    if has_scope(principal, DASHBOARD_SCOPE):
        if tenant and tenant != principal.tenant:
            raise PermissionDenied("A dashboard key may read only its own tenant's budgets")
        key = await keys.get(key_id) if key_id else None
        if key is not None and key.tenant != principal.tenant:
            raise PermissionDenied("A dashboard key may read only its own tenant's budgets")
        return key, principal.tenant
    if (tenant and tenant != principal.tenant) or (key_id and key_id != principal.key_id):
        raise PermissionDenied("Only the master key may read other keys' or tenants' budgets")
    return principal.metadata.get("key"), principal.tenant
