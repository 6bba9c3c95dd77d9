"""The figures of each dashboard view, as pure functions of usage records (the rows
``limits.usage.query`` returns for ``/v1/usage``), budget rows (``limits.budgets.report``,
as ``/v1/budget``) and the catalog. Every view repeats ``usage.summarize`` of the same
records, so the page shows exactly what ``/v1/usage`` returns for the same filter.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tiergate.config.adapters import LLAMA_CPP
from tiergate.config.catalog import Catalog, ModelSpec
from tiergate.limits.usage import summarize

#: Tier 4 is "external / real-time" (search-backed models), not the premium tier.
TOP_TIER_MAX = 3

BASELINE_METHOD = (
    "Top-tier estimate: for every request, its recorded prompt and completion tokens priced at the "
    "catalog's most expensive model of tier {tier} ({model}: ${inp}/M input, ${out}/M output tokens). "
    "Savings = that estimate - the actual cost. It assumes the top-tier model would have used the same "
    "tokens, and counts failed requests (no tokens) as zero on both sides. Cache savings are the costs "
    "the cache hits recorded as saved.")
NAMED = "model named"
PERCENTILE_METHOD = "Percentiles are nearest-rank over the requests in the filter (p50 = median)."


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 3)


def _day(rec: Mapping[str, Any]) -> str:
    return str(rec.get("ts", ""))[:10]


def _cost(value: Any) -> float:
    return float(value or 0.0)


def reference_model(catalog: Catalog) -> ModelSpec | None:
    """The top tier's (<= 3) most expensive model: what "every request at the top tier" costs."""
    priced = [m for m in catalog.models if m.input_cost_per_mtok is not None and m.output_cost_per_mtok is not None]
    if not priced:
        return None
    top = max((m.tier for m in priced if m.tier <= TOP_TIER_MAX), default=max(m.tier for m in priced))
    return max((m for m in priced if m.tier == top),
               key=lambda m: (m.input_cost_per_mtok or 0) + (m.output_cost_per_mtok or 0))


def cache_saved(rec: Mapping[str, Any]) -> float:
    """The cost a cache hit saved (the cache's records carry it; older records have none)."""
    if not rec.get("cache_hit"):
        return 0.0
    return _cost(rec.get("saved_usd"))  # written by the cache step on a hit (limits/usage.py)


def spend(records: list[dict[str, Any]], catalog: Catalog) -> dict[str, Any]:
    """Cost per day and tier, the top-tier estimate and the savings."""
    ref = reference_model(catalog)
    per_day: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    baseline_day: dict[str, float] = defaultdict(float)
    per_tier: dict[str, float] = defaultdict(float)
    requests_tier: Counter[str] = Counter()
    baseline = cache = 0.0
    hits = 0
    for r in records:
        tier = str(r.get("tier"))
        cost = _cost(r.get("cost_usd"))
        per_day[_day(r)][tier] += cost
        per_tier[tier] += cost
        requests_tier[tier] += 1
        if ref is not None:
            b = ref.cost_usd(int(r.get("prompt_tokens") or 0), int(r.get("completion_tokens") or 0))
            baseline += b
            baseline_day[_day(r)] += b
        if r.get("cache_hit"):
            hits += 1
            cache += cache_saved(r)
    summary = summarize(records)
    actual = summary["cost_usd"]
    days = sorted(per_day)
    return {
        "summary": summary,
        "days": [{"day": d, "cost_by_tier": {t: round(c, 9) for t, c in sorted(per_day[d].items())},
                  "cost_usd": round(sum(per_day[d].values()), 9), "baseline_usd": round(baseline_day[d], 9)}
                 for d in days],
        "tiers": [{"tier": t, "requests": requests_tier[t], "cost_usd": round(per_tier[t], 9)}
                  for t in sorted(per_tier)],
        "baseline": None if ref is None else {
            "model": ref.name, "tier": ref.tier, "input_cost_per_mtok": ref.input_cost_per_mtok,
            "output_cost_per_mtok": ref.output_cost_per_mtok, "cost_usd": round(baseline, 9),
            "savings_usd": round(baseline - actual, 9),
            "savings_percent": round(100 * (baseline - actual) / baseline, 2) if baseline > 0 else None,
            "method": BASELINE_METHOD.format(tier=ref.tier, model=ref.name, inp=ref.input_cost_per_mtok,
                                             out=ref.output_cost_per_mtok)},
        "cache": {"hits": hits, "hit_rate": round(hits / len(records), 4) if records else None,
                  "saved_usd": round(cache, 9)},
    }


def burn_down(records: Iterable[dict[str, Any]], row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Remaining budget after each settled request of the period (records oldest first)."""
    limit = float(row["limit_usd"])
    spent, points = 0.0, [{"ts": None, "remaining_usd": limit}]
    for r in records:
        spent += _cost(r.get("cost_usd"))
        points.append({"ts": r.get("ts"), "remaining_usd": round(limit - spent, 9)})
    return points


def _in_scope(rec: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    scope, sid, period_id = row["scope"], str(row["id"]), str(row["period_id"])
    if not str(rec.get("ts", "")).startswith(period_id):
        return False
    if scope == "key":
        return rec.get("key_id") == sid
    if scope == "tenant":
        return rec.get("tenant") == sid
    if scope == "tier":
        return str(rec.get("tier")) == sid
    return True


def budgets(rows: list[dict[str, Any]], records: list[dict[str, Any]], *, soft_fraction: float) -> dict[str, Any]:
    """``/v1/budget``'s rows, each with its soft-limit mark and burn-down line."""
    out = []
    for row in rows:
        mine = [r for r in records if _in_scope(r, row)]
        out.append({**row, "soft_limit_usd": round(float(row["limit_usd"]) * soft_fraction, 9),
                    "burn_down": burn_down(mine, row)})
    return {"soft_limit_fraction": soft_fraction, "scopes": out,
            "tier_allocations": [r for r in out if r["scope"] == "tier"]}


def latency(records: list[dict[str, Any]], circuits: Mapping[str, Mapping[str, Any]],
            catalog: Catalog) -> dict[str, Any]:
    """p50/p99 latency and time to first token per model; errors; retries; circuits."""
    lat: dict[str, list[float]] = defaultdict(list)
    ttft: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    retries = fallbacks = 0
    for r in records:
        model = str(r.get("model"))
        if r.get("latency_ms") is not None:
            lat[model].append(float(r["latency_ms"]))
        if r.get("ttft_ms") is not None:
            ttft[model].append(float(r["ttft_ms"]))
        outcome = str(r.get("outcome") or "")
        if outcome.startswith("error"):
            errors[outcome.partition(":")[2] or "error"] += 1
        retries += max(0, int(r.get("attempts") or 0) - 1)
        fallbacks += 1 if r.get("fallback") else 0
    models = sorted(set(lat) | set(ttft))
    return {
        "summary": summarize(records),
        "models": [{"model": m, "requests": len(lat[m]), "p50_ms": percentile(lat[m], 50),
                    "p99_ms": percentile(lat[m], 99), "streams": len(ttft[m]),
                    "ttft_p50_ms": percentile(ttft[m], 50), "ttft_p99_ms": percentile(ttft[m], 99)}
                   for m in models],
        "errors": [{"error": e, "count": n} for e, n in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))],
        "retries": retries, "fallbacks": fallbacks,
        "circuits": [{"deployment": d.deployment_id, "model": d.name,
                      "state": str((circuits.get(d.deployment_id) or {}).get("state", "closed")),
                      "failures": int((circuits.get(d.deployment_id) or {}).get("failures", 0))}
                     for d in catalog.models],
        "method": PERCENTILE_METHOD,
    }


def routing(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Decisions by task type and tier; cascade escalation per policy and step; the learned
    router's predicted quality beside feedback where records carry both."""
    decisions: dict[str, Counter[str]] = defaultdict(Counter)
    steps: dict[str, Counter[int]] = defaultdict(Counter)
    quality = []
    for r in records:
        if r.get("cascade_policy") is not None:
            steps[str(r["cascade_policy"])][int(r.get("cascade_step") or 0)] += 1
            if int(r.get("cascade_step") or 0) > 0:
                continue  # a request is one decision: count a cascade at its first step
        # Only ``auto`` (and cascades) classify the task; a named model is its own decision.
        decisions[str(r.get("capability") or NAMED)][str(r.get("tier"))] += 1
        if r.get("predicted_quality") is not None and r.get("feedback_score") is not None:
            quality.append({"predicted": float(r["predicted_quality"]), "feedback": float(r["feedback_score"])})
    cascades = []
    for policy, by_step in sorted(steps.items()):
        n = max(by_step) + 1
        rows = []
        for i in range(n):
            here, nxt = by_step.get(i, 0), by_step.get(i + 1, 0)
            rows.append({"step": i, "requests": here,
                         "escalation_rate": round(nxt / here, 4) if here and i + 1 < n else None})
        cascades.append({"policy": policy, "steps": rows})
    return {
        "summary": summarize(records),
        "decisions": [{"task_type": t, "tiers": dict(sorted(c.items())), "requests": sum(c.values())}
                      for t, c in sorted(decisions.items())],
        "cascades": cascades,
        "quality": quality,
    }


def edge(records: list[dict[str, Any]], catalog: Catalog, status: Mapping[str, Any] | None,
         history: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Local vs offloaded share (from the records), queue depth, sync lag, reachability."""
    local_models = {m.name for m in catalog.models if m.adapter == LLAMA_CPP}
    local = sum(1 for r in records if r.get("model") in local_models)
    offloaded = sum(1 for r in records if r.get("model") not in local_models and r.get("model") is not None)
    answered = local + offloaded
    return {
        "summary": summarize(records),
        "available": status is not None,
        "local": local, "offloaded": offloaded,
        "local_share": round(local / answered, 4) if answered else None,
        "status": dict(status) if status is not None else None,
        "history": [dict(h) for h in history],
    }
