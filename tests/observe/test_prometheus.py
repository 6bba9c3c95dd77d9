"""``GET /metrics`` scraped as Prometheus does, parsed with ``prometheus_client``'s own
parsers (text 0.0.4 and OpenMetrics), after known traffic; the seed's JSON stays the
answer for JSON clients and for curl without an Accept header."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from tests.support.traffic import MASTER
from tiergate.observe.prometheus import OUTCOMES, SERIES, error_codes

SCRAPER_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                  "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # what Prometheus 2.x sends


def scrape(served, accept="text/plain"):
    r = httpx.get(served.url + "/metrics", headers={"authorization": f"Bearer {MASTER}", "accept": accept})
    assert r.status_code == 200, r.text
    return r


def samples(text: str, parser=parse_text) -> dict[str, list]:
    out: dict[str, list] = {}
    for fam in parser(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def total(series: dict[str, list], name: str, **labels: str) -> float:
    return sum(s.value for s in series.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_json_for_json_clients_and_plain_curl(served, accept):
    headers = {"authorization": f"Bearer {MASTER}"} | ({"accept": accept} if accept else {})
    r = httpx.get(served.url + "/metrics", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert {"requests_per_tier", "cost_per_tier", "budget_utilization_percentage"} <= set(body)


def test_prometheus_text_scrape(served):
    r = scrape(served)
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(r.text)
    usage = httpx.get(served.url + "/v1/usage?period=all&limit=10000",
                      headers={"authorization": f"Bearer {MASTER}"}).json()
    recs = usage["data"]
    # One request counter tick per settled request (cascade steps settle per step, and the
    # cascade emits one more record for the request as a whole).
    cascades = 1
    cascade_steps = sum(1 for rec in recs if rec.get("cascade_policy"))
    assert total(got, "tiergate_requests_total") == len(recs) - cascade_steps + cascades
    assert total(got, "tiergate_requests_total", model="small", tier="0", outcome="ok") >= 4
    assert total(got, "tiergate_errors_total", model="broken", tier="4", error="upstream_server_error") == 1
    assert total(got, "tiergate_requests_total", model="broken", outcome="error") == 1
    # Tokens and cost: a cascade's record sums its steps, so the totals equal the ledger's.
    assert total(got, "tiergate_tokens_total", type="input") == usage["summary"]["prompt_tokens"]
    assert total(got, "tiergate_tokens_total", type="output") == usage["summary"]["completion_tokens"]
    assert total(got, "tiergate_cost_usd_total") == pytest.approx(usage["summary"]["cost_usd"], rel=1e-6)
    assert total(got, "tiergate_time_to_first_token_seconds_count") == 2  # two streams
    assert total(got, "tiergate_request_duration_seconds_count") == total(got, "tiergate_requests_total")
    assert total(got, "tiergate_retries_total", model="balanced") >= 1
    assert total(got, "tiergate_cascade_requests_total", policy="default") == 1
    assert total(got, "tiergate_cascade_steps_total", policy="default") == 2
    assert total(got, "tiergate_routing_decisions_total", task_type="coding", tier="0") == 1
    # Gauges read at scrape time: budgets as /v1/budget reports them, circuits per deployment.
    budget = httpx.get(served.url + "/v1/budget", headers={"authorization": f"Bearer {MASTER}"}).json()
    for row in budget["scopes"]:
        gauge = [s for s in got["tiergate_budget_utilization_percent"]
                 if s.labels == {"scope": row["scope"], "id": str(row["id"]), "period": row["period"]}]
        assert [s.value for s in gauge] == [row["utilization_percentage"]]
    circuits = {s.labels["deployment"]: s.value for s in got["tiergate_circuit_state"]}
    assert set(circuits) == {"small", "fast", "balanced", "premium", "broken"}
    assert set(circuits.values()) <= {0, 1, 2}


def test_openmetrics_when_the_scraper_prefers_it(served):
    r = scrape(served, SCRAPER_ACCEPT)
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")
    got = samples(r.text, parse_openmetrics)
    assert total(got, "tiergate_requests_total") > 0


def test_label_sets_are_bounded(served):
    got = samples(scrape(served).text)
    keys = {k for k, _ in served.keys.values()}
    allowed_models = {"small", "fast", "balanced", "premium", "broken", "other"}
    for name, ss in got.items():
        if not name.startswith("tiergate_"):
            continue
        for s in ss:
            values = set(s.labels.values())
            assert not values & keys, (name, s.labels)
            assert all(len(v) < 64 for v in values)
            if "model" in s.labels:
                assert s.labels["model"] in allowed_models
            if "outcome" in s.labels:
                assert s.labels["outcome"] in OUTCOMES
            if "error" in s.labels:
                assert s.labels["error"] in error_codes() | {"other"}
    families = {f.name for f in parse_text(scrape(served).text) if f.name.startswith("tiergate_")}
    assert families == {n.removesuffix("_total") for n in SERIES if not n.startswith("tiergate_edge_")}


def test_open_circuit_is_scraped(served):
    with httpx.Client(base_url=served.url, headers={"authorization": f"Bearer {MASTER}"}, timeout=30) as c:
        for _ in range(3):  # broken fails every attempt; the breaker opens at 5 failures
            c.post("/v1/chat/completions", json={"model": "broken", "messages": [{"role": "user", "content": "x"}]})
    got = samples(scrape(served).text)
    assert {s.labels["deployment"]: s.value for s in got["tiergate_circuit_state"]}["broken"] == 2


def test_metrics_needs_the_master_key(served):
    r = httpx.get(served.url + "/metrics", headers={"accept": "text/plain",
                                                    "authorization": f"Bearer {served.keys['acme'][1]}"})
    assert r.status_code == 403
