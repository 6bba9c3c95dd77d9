"""The usage ledger (one record per request) and the ``/metrics`` counters.

Usage records live in the ``usage`` table: ``pk`` = key id, ``sk`` = ``<ts>#<request
id>`` (time-ordered per key), ``tenant``/``ts`` for the ``by_tenant`` index, and
``expires_at`` for retention. They are written once (condition "absent"), so a replayed
settlement never duplicates one.

Seed 004's metrics (requests and cost per tier, most used capabilities) are counters
per UTC month under ``pk = "metrics"`` in the ``budgets`` table, added at settlement in
the same store call as the usage record.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tiergate.config.budgets import BudgetsConfig
from tiergate.limits.admission import Outcome, Ticket
from tiergate.limits.budgets import period_bounds, to_nano, to_usd
from tiergate.stores.base import Correction, CounterKey, RecordStore

TABLE = "usage"
METRICS_PK = "metrics"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def usage_record(ticket: Ticket, outcome: Outcome, *, now: float, retention_days: int) -> dict[str, Any]:
    dep = outcome.deployment or ticket.deployment
    ts = iso(now)
    p = ticket.principal
    return {
        "pk": p.key_id, "sk": f"{ts}#{ticket.request_id}", "request_id": ticket.request_id,
        "key_id": p.key_id, "tenant": p.tenant, "ts": ts,
        "model": dep.name, "deployment": dep.deployment_id, "tier": dep.tier,
        "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
        "cost_usd": round(outcome.cost_usd, 9), "reserved_usd": round(ticket.reserved_usd, 9),
        "latency_ms": round(outcome.latency_ms, 3), "cache_hit": outcome.cache_hit,
        "attempts": outcome.attempts, "outcome": outcome.outcome, "capability": outcome.capability,
        "expires_at": int(now) + retention_days * 86400,
    }


def metric_corrections(rec: dict[str, Any], *, now: float) -> list[Correction]:
    month, end = period_bounds("month", now)
    exp = end + 90 * 86400
    out = [Correction(CounterKey("budgets", METRICS_PK, f"{month}#req#{rec['tier']}"), 1, exp),
           Correction(CounterKey("budgets", METRICS_PK, f"{month}#cost#{rec['tier']}"),
                      to_nano(rec["cost_usd"]), exp)]
    if rec.get("capability"):
        out.append(Correction(CounterKey("budgets", METRICS_PK, f"{month}#cap#{rec['capability']}"), 1, exp))
    return out


async def query(store: RecordStore, *, key_id: str | None = None, tenant: str | None = None,
                since: float | None = None, until: float | None = None, tier: int | None = None,
                model: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Usage records of one key, one tenant, or (neither) everyone; filtered."""
    lo = iso(since) if since is not None else None
    hi = iso(until) if until is not None else None
    if key_id is not None:
        recs = await store.query(TABLE, key_id, sk_from=lo, sk_to=hi and hi + "~", limit=limit)
    elif tenant is not None:
        recs = await store.query_tenant(TABLE, tenant, ts_from=lo, ts_to=hi, limit=limit)
    else:
        # Only usage records have ``ts``: routing labels share the table (routing/learned/labels.py).
        recs = [r for r in await store.scan(TABLE, limit=100_000)
                if "ts" in r and (lo is None or r["ts"] >= lo) and (hi is None or r["ts"] <= hi)]
        recs.sort(key=lambda r: r["ts"])
    if tenant is not None:
        recs = [r for r in recs if r.get("tenant") == tenant]
    recs = [r for r in recs if (tier is None or r.get("tier") == tier) and (model is None or r.get("model") == model)]
    return [{k: v for k, v in r.items() if k not in ("pk", "sk", "expires_at")} for r in recs[:limit]]


def summarize(recs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "requests": len(recs),
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in recs),
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in recs),
        "cost_usd": round(sum(r.get("cost_usd", 0.0) for r in recs), 9),
    }


async def metrics(store: RecordStore, cfg: BudgetsConfig, *, now: float) -> dict[str, Any]:
    """Seed 004's ``GET /metrics`` for the current UTC month."""
    month, _ = period_bounds("month", now)
    counters = await store.scan_counters("budgets", METRICS_PK)
    req: dict[str, int] = {}
    cost: dict[str, float] = {}
    caps: dict[str, int] = {}
    for k, st in counters.items():
        m, kind, name = k.sk.split("#", 2)
        if m != month:
            continue
        if kind == "req":
            req[name] = st.used
        elif kind == "cost":
            cost[name] = to_usd(st.used)
        elif kind == "cap":
            caps[name] = st.used
    limit = cfg.global_.monthly_usd
    total = sum(cost.values())
    return {
        "period": month[1:],
        "requests_per_tier": dict(sorted(req.items())),
        "cost_per_tier": {t: round(c, 6) for t, c in sorted(cost.items())},
        "total_cost_usd": round(total, 6),
        "budget_utilization_percentage": round(100 * total / limit, 2) if limit else None,
        "most_used_capabilities": [c for c, _ in sorted(caps.items(), key=lambda kv: (-kv[1], kv[0]))[:5]],
    }


async def reset(store: RecordStore, *, budgets: bool = False) -> dict[str, int]:
    """Admin reset: the metrics counters, and with ``budgets`` every budget counter
    (holds included: in-flight requests still settle their actual cost)."""
    metric_keys = list(await store.scan_counters("budgets", METRICS_PK))
    budget_keys = list(await store.scan_counters("budgets", "b#")) if budgets else []
    await store.delete_counters(metric_keys + budget_keys)
    return {"metrics_counters": len(metric_keys), "budget_counters": len(budget_keys)}
