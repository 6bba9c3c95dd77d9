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

from collections import deque
from datetime import UTC, datetime
from typing import Any

from tiergate.config.budgets import BudgetsConfig
from tiergate.errors import InvalidRequest
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
    rec = {
        "pk": p.key_id, "sk": f"{ts}#{ticket.request_id}", "request_id": ticket.request_id,
        "key_id": p.key_id, "tenant": p.tenant, "ts": ts,
        "model": dep.name, "deployment": dep.deployment_id, "tier": dep.tier,
        "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
        "cost_usd": round(outcome.cost_usd, 9), "reserved_usd": round(ticket.reserved_usd, 9),
        "latency_ms": round(outcome.latency_ms, 3), "cache_hit": outcome.cache_hit,
        "saved_usd": round(outcome.saved_usd, 9),
        "attempts": outcome.attempts, "outcome": outcome.outcome, "capability": outcome.capability,
        "ttft_ms": round(outcome.ttft_ms, 3) if outcome.ttft_ms is not None else None,
        "fallback": outcome.fallback, "cascade_policy": outcome.cascade_policy,
        "cascade_step": outcome.cascade_step,
        "expires_at": int(now) + retention_days * 86400,
    }
    if outcome.operation is not None:
        rec["operation"] = outcome.operation
    return rec


def metric_corrections(rec: dict[str, Any], *, now: float) -> list[Correction]:
    month, end = period_bounds("month", now)
    exp = end + 90 * 86400
    out = [Correction(CounterKey("budgets", METRICS_PK, f"{month}#req#{rec['tier']}"), 1, exp),
           Correction(CounterKey("budgets", METRICS_PK, f"{month}#cost#{rec['tier']}"),
                      to_nano(rec["cost_usd"]), exp)]
    if rec.get("capability"):
        out.append(Correction(CounterKey("budgets", METRICS_PK, f"{month}#cap#{rec['capability']}"), 1, exp))
    if rec.get("cache_hit"):
        out += [Correction(CounterKey("budgets", METRICS_PK, f"{month}#hit#{rec['tier']}"), 1, exp),
                Correction(CounterKey("budgets", METRICS_PK, f"{month}#saved#{rec['tier']}"),
                           to_nano(rec.get("saved_usd") or 0.0), exp)]
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
    return [_public(r) for r in recs[:limit]]


def _public(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in ("pk", "sk", "expires_at")}


def period_start(period: str, now: float) -> float | None:
    """Start (epoch seconds) of the UTC ``day`` or ``month`` containing ``now``; None for
    ``all``. The one reading of ``period`` that ``/v1/usage`` and the dashboard share."""
    if period == "all":
        return None
    if period not in ("day", "month"):
        raise InvalidRequest("period must be day, month or all", param="period")
    pid, _ = period_bounds(period, now)
    fmt = "d%Y-%m-%d" if period == "day" else "m%Y-%m"
    return datetime.strptime(pid + "+0000", fmt + "%z").timestamp()


class MemoryLedger:
    """The last usage records of a home without a record store (the edge agent, a
    master-key-only gateway), in memory and bounded; queried like the store's ledger."""

    def __init__(self, *, keep: int = 10_000) -> None:
        self._recs: deque[dict[str, Any]] = deque(maxlen=keep)

    def add(self, ticket: Ticket, outcome: Outcome, *, now: float) -> None:
        self._recs.append(_public(usage_record(ticket, outcome, now=now, retention_days=0)))

    def query(self, *, key_id: str | None = None, tenant: str | None = None, since: float | None = None,
              until: float | None = None, tier: int | None = None, model: str | None = None,
              limit: int = 1000) -> list[dict[str, Any]]:
        lo = iso(since) if since is not None else None
        hi = iso(until) if until is not None else None
        out = [r for r in self._recs
               if (key_id is None or r["key_id"] == key_id) and (tenant is None or r["tenant"] == tenant)
               and (lo is None or r["ts"] >= lo) and (hi is None or r["ts"] <= hi)
               and (tier is None or r.get("tier") == tier) and (model is None or r.get("model") == model)]
        return out[:limit]


def summarize(recs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "requests": len(recs),
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in recs),
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in recs),
        "cost_usd": round(sum(r.get("cost_usd", 0.0) for r in recs), 9),
        "cache": cache_summary(recs),
    }


def _hit_rate(hits: int, requests: int) -> float | None:
    return round(hits / requests, 4) if requests else None


def cache_summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Cache hits, hit rate and dollars saved, overall and per tier."""
    tiers: dict[str, dict[str, Any]] = {}
    for r in recs:
        t = tiers.setdefault(str(r.get("tier")), {"requests": 0, "hits": 0, "saved_usd": 0.0})
        t["requests"] += 1
        if r.get("cache_hit"):
            t["hits"] += 1
            t["saved_usd"] += r.get("saved_usd") or 0.0
    for t in tiers.values():
        t["hit_rate"], t["saved_usd"] = _hit_rate(t["hits"], t["requests"]), round(t["saved_usd"], 9)
    hits = sum(t["hits"] for t in tiers.values())
    return {"hits": hits, "hit_rate": _hit_rate(hits, len(recs)),
            "saved_usd": round(sum(t["saved_usd"] for t in tiers.values()), 9),
            "per_tier": dict(sorted(tiers.items()))}


async def metrics(store: RecordStore, cfg: BudgetsConfig, *, now: float) -> dict[str, Any]:
    """Seed 004's ``GET /metrics`` for the current UTC month."""
    month, _ = period_bounds("month", now)
    counters = await store.scan_counters("budgets", METRICS_PK)
    req: dict[str, int] = {}
    cost: dict[str, float] = {}
    caps: dict[str, int] = {}
    hits: dict[str, int] = {}
    saved: dict[str, float] = {}
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
        elif kind == "hit":
            hits[name] = st.used
        elif kind == "saved":
            saved[name] = to_usd(st.used)
    limit = cfg.global_.monthly_usd
    total = sum(cost.values())
    return {
        "period": month[1:],
        "requests_per_tier": dict(sorted(req.items())),
        "cost_per_tier": {t: round(c, 6) for t, c in sorted(cost.items())},
        "total_cost_usd": round(total, 6),
        "budget_utilization_percentage": round(100 * total / limit, 2) if limit else None,
        "most_used_capabilities": [c for c, _ in sorted(caps.items(), key=lambda kv: (-kv[1], kv[0]))[:5]],
        "cache_hits_per_tier": {t: hits.get(t, 0) for t in sorted(req)},
        "cache_hit_rate_per_tier": {t: _hit_rate(hits.get(t, 0), n) for t, n in sorted(req.items())},
        "cache_saved_usd_per_tier": {t: round(saved.get(t, 0.0), 6) for t in sorted(req)},
        "cache_saved_usd": round(sum(saved.values()), 6),
    }


async def reset(store: RecordStore, *, budgets: bool = False) -> dict[str, int]:
    """Admin reset: the metrics counters, and with ``budgets`` every budget counter
    (holds included: in-flight requests still settle their actual cost)."""
    metric_keys = list(await store.scan_counters("budgets", METRICS_PK))
    budget_keys = list(await store.scan_counters("budgets", "b#")) if budgets else []
    await store.delete_counters(metric_keys + budget_keys)
    return {"metrics_counters": len(metric_keys), "budget_counters": len(budget_keys)}
