"""The Grafana dashboard (``infra/grafana/tiergate.json``): every query names a series the
gateway really exposes -- checked against a scrape of the Prometheus sink after one record
of every kind, parsed with ``prometheus_client``'s own parser -- and every label it groups
by exists on that series."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tiergate.observe.prometheus import SERIES, PrometheusMetrics, Snapshot

DASHBOARD = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "tiergate.json"
NAME = re.compile(r"\btiergate_[a-z0-9_]+")
BY = re.compile(r"\bby \(([^)]*)\)")


def scraped() -> dict[str, set[str]]:
    """Sample name -> label names, from a scrape that exercised every series."""
    prom = PrometheusMetrics(models=["m"], deployments=["m"], policies=["default"])
    prom.emit({"model": "m", "tier": 1, "outcome": "ok", "latency_ms": 12.0, "ttft_ms": 3.0, "prompt_tokens": 5,
               "completion_tokens": 7, "cost_usd": 0.001, "attempts": 2, "fallback": True, "task_type": "coding",
               "cache_hit": True, "saved_cost_usd": 0.002})
    prom.emit({"model": "m", "tier": 1, "outcome": "error:upstream_timeout", "latency_ms": 30.0})
    prom.emit({"model": "m", "tier": 2, "outcome": "ok", "cascade_policy": "default", "cascade_steps": 2})
    snap = Snapshot(circuits={"m": "open"}, budgets=[{"scope": "global", "id": "all", "period": "month",
                                                     "limit_usd": 10.0, "utilization_percentage": 5.0}],
                    edge={"queue": {"queued": 1}, "usage_outbox_pending": 2, "cloud_up": True})
    body, _ = prom.render("text/plain", snap)
    out: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


def queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 14
    return exprs


def test_every_query_names_an_exposed_series():
    series = scraped()
    assert {n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for n in series
            if n.startswith("tiergate_")} == set(SERIES)  # the scrape above touched every series
    for expr in queries():
        names = NAME.findall(expr)
        assert names, expr
        for name in names:
            assert name in series, f"{name} (in {expr!r}) is not exposed by /metrics"
            labels = series[name] - {"le"}
            for group in BY.findall(expr):
                for label in (x.strip() for x in group.split(",")):
                    assert label == "le" and name.endswith("_bucket") or label in labels, (label, name)


def test_every_series_has_a_panel():
    used = {n.removesuffix("_bucket") for e in queries() for n in NAME.findall(e)}
    missing = {n for n in SERIES if n not in used and n not in ("tiergate_budget_limit_usd",)}
    assert not missing, missing
