"""The dashboard in a real browser: Debian's chromium driven by Playwright (the Python
package, pointed at ``/usr/bin/chromium``; ``.ci/install-browser.sh`` installs it).

Against a gateway that served known traffic: sign in with the master key and with a
tenant's ``dashboard`` key, load every view, assert that the figures shown equal what
``/v1/usage`` and ``/v1/budget`` return for the same filter, that there is not one console
error, and save a screenshot of each view under ``tests/dashboard/screenshots/`` (CI
artifacts). The edge view is loaded on a real edge agent (llama.cpp on the tiny GGUF)
offloading to that gateway.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from tests.support.traffic import MASTER, Served

CHROMIUM = "/usr/bin/chromium"
# Per the machine notes: no sandbox as root, and no background connections to the
# (closed) network, which would otherwise fail loudly at every start.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
VIEWS = ("spend", "budgets", "latency", "routing", "edge")

if shutil.which(CHROMIUM) is None:  # pragma: no cover - .ci/run installs it first
    pytest.fail(f"{CHROMIUM} is missing: run .ci/install-browser.sh", pytrace=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Session:
    """A page signed in to one gateway's dashboard, recording console errors."""

    def __init__(self, browser: Browser, url: str, key: str) -> None:
        self.context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto("/dashboard")
        self.page.wait_for_selector("#signin-form", state="visible")
        self.page.fill("#key", key)
        self.page.click("#signin-form button[type=submit]")
        self.page.wait_for_selector("#view[data-loaded=spend]")
        assert self.page.input_value("#key") == ""  # the key does not stay in the page

    def view(self, name: str) -> None:
        self.page.evaluate("document.getElementById('view').dataset.loaded = ''")
        self.page.click(f"#tabs a[data-view={name}]")
        self.page.wait_for_selector(f"#view[data-loaded={name}]")

    def value(self, testid: str) -> Any:
        return json.loads(self.page.get_attribute(f"[data-testid='{testid}']", "data-value"))

    def text(self, testid: str) -> str:
        return self.page.inner_text(f"[data-testid='{testid}']")

    def shot(self, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000
        return path

    def close(self) -> None:
        assert self.errors == [], self.errors
        self.context.close()


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1], 3)


def check_summary(s: Session, prefix: str, summary: dict[str, Any]) -> None:
    assert s.value(f"{prefix}-requests") == summary["requests"]
    assert s.value(f"{prefix}-prompt-tokens") == summary["prompt_tokens"]
    assert s.value(f"{prefix}-completion-tokens") == summary["completion_tokens"]
    assert s.value(f"{prefix}-cost") == summary["cost_usd"]
    assert s.text(f"{prefix}-cost") == f"${summary['cost_usd']:.6f}"


def test_master_sees_every_view_with_the_apis_figures(browser, served: Served):
    s = Session(browser, served.url, MASTER)
    usage = served.api(MASTER, "/v1/usage?period=month&limit=10000")
    recs = usage["data"]
    assert "GET /v1/usage?period=month&limit=10000" in s.page.inner_text("#source")

    check_summary(s, "spend", usage["summary"])
    for tier in {r["tier"] for r in recs}:
        mine = [r for r in recs if r["tier"] == tier]
        assert s.value(f"spend-tier-{tier}-requests") == len(mine)
        assert s.value(f"spend-tier-{tier}-cost") == pytest.approx(sum(r["cost_usd"] for r in mine), abs=1e-9)
    baseline = sum(r["prompt_tokens"] * 10 / 1e6 + r["completion_tokens"] * 30 / 1e6 for r in recs)  # premium
    assert s.value("spend-baseline") == pytest.approx(baseline, abs=1e-9)
    assert s.value("spend-savings") == pytest.approx(baseline - usage["summary"]["cost_usd"], abs=1e-9)
    assert "premium" in s.text("spend-method") and "Savings = " in s.text("spend-method")
    assert s.page.locator("svg.chart").count() >= 2
    s.shot("spend")

    s.view("budgets")
    budget = served.api(MASTER, "/v1/budget")
    for row in budget["scopes"]:
        rid = f"budget-{row['scope']}-{row['id']}-{row['period']}"
        assert s.value(f"{rid}-spent") == row["spent_usd"]
        assert s.value(f"{rid}-reserved") == row["reserved_usd"]
        assert s.value(f"{rid}-limit") == row["limit_usd"]
        assert s.value(f"{rid}-utilization") == row["utilization_percentage"]
    assert s.page.locator("svg.chart polyline").count() >= 2  # burn-down lines
    assert s.page.get_by_text("soft limit").count() >= 1
    s.shot("budgets")

    s.view("latency")
    check_summary(s, "latency", usage["summary"])
    for model in {r["model"] for r in recs}:
        lat = [r["latency_ms"] for r in recs if r["model"] == model]
        assert s.value(f"lat-{model}-requests") == len(lat)
        assert s.value(f"lat-{model}-p50") == nearest_rank(lat, 50)
        assert s.value(f"lat-{model}-p99") == nearest_rank(lat, 99)
    ttft = [r["ttft_ms"] for r in recs if r["model"] == "fast" and r["ttft_ms"] is not None]
    assert s.value("lat-fast-ttft-p50") == nearest_rank(ttft, 50)
    assert s.value("latency-retries") == sum(max(0, r["attempts"] - 1) for r in recs)
    assert s.value("err-upstream_server_error") == sum(r["outcome"] == "error:upstream_server_error" for r in recs)
    assert s.value("circuit-small") == "closed"
    s.shot("latency")

    s.view("routing")
    check_summary(s, "routing", usage["summary"])
    assert s.value("route-coding-requests") == sum(r["capability"] == "coding" and not r["cascade_step"] for r in recs)
    assert s.value("cascade-default-0-requests") == 1
    assert s.value("cascade-default-0-escalation") == 100.0
    s.shot("routing")

    s.view("edge")
    assert "Not an edge agent" in s.page.inner_text("#view")

    # Filters: tenant and model, as /v1/usage filters them.
    s.view("spend")
    s.page.select_option("#f-tenant", "acme")
    s.page.select_option("#f-model", "fast")
    s.page.evaluate("document.getElementById('view').dataset.loaded = ''")
    s.page.click("#filters button[type=submit]")
    s.page.wait_for_selector("#view[data-loaded=spend]")
    check_summary(s, "spend", served.api(MASTER, "/v1/usage?period=month&limit=10000&tenant=acme&model=fast")["summary"])
    s.page.select_option("#f-period", "day")
    s.page.select_option("#f-model", "")
    s.page.evaluate("document.getElementById('view').dataset.loaded = ''")
    s.page.click("#filters button[type=submit]")
    s.page.wait_for_selector("#view[data-loaded=spend]")
    check_summary(s, "spend", served.api(MASTER, "/v1/usage?period=day&limit=10000&tenant=acme")["summary"])
    s.shot("spend-filtered")
    s.close()


def test_tenant_dashboard_key_sees_only_its_tenant(browser, served: Served):
    key = served.keys["acme-dash"][1]
    s = Session(browser, served.url, key)
    assert "tenant acme" in s.text("viewer")
    assert s.page.is_disabled("#f-tenant")
    want = served.api(MASTER, "/v1/usage?period=month&limit=10000&tenant=acme")["summary"]
    check_summary(s, "spend", want)
    everyone = served.api(MASTER, "/v1/usage?period=month&limit=10000")["summary"]
    assert want["requests"] < everyone["requests"]
    s.shot("spend-tenant")
    s.view("budgets")
    budget = served.api(key, "/v1/budget")
    assert budget["tenant"] == "acme"
    for row in budget["scopes"]:
        assert s.value(f"budget-{row['scope']}-{row['id']}-{row['period']}-spent") == row["spent_usd"]
    assert s.page.get_by_text("only the master key sees global spend").count() >= 1
    s.shot("budgets-tenant")
    with s.page.expect_response("**/dashboard/logout") as out:
        s.page.click("#logout")
    assert out.value.status == 200, out.value.text()
    s.page.wait_for_selector("#signin-form", state="visible")
    assert s.context.cookies() == []  # signed out: the browser holds no session
    s.close()


def test_edge_view_on_an_edge_agent(browser, served: Served, tiny_gguf: Path, tmp_path: Path):
    from tests.edge.conftest import start_app
    from tiergate.settings import Settings
    from tiergate_edge.agent import EdgeAgent, build_edge_app
    from tiergate_edge.settings import EdgeSettings

    data = tmp_path / "edge"
    agent = EdgeAgent(Settings(data_dir=data, environment="test"), EdgeSettings(
        model=str(tiny_gguf), n_threads=1, data_dir=data, cloud_url=served.url, cloud_key=served.keys["acme"][1],
        probe_interval_s=0.5, probe_backoff_min_s=0.2, probe_backoff_max_s=0.5, usage_sync_interval_s=3600,
        history_interval_s=0.2))
    url, server, thread = start_app(build_edge_app(agent))
    try:
        threading_wait(lambda: agent.health.is_up)
        with httpx.Client(base_url=url, timeout=120) as c:
            for i in range(3):
                r = c.post("/v1/chat/completions", json={"model": "auto", "max_tokens": 8,
                                                         "messages": [{"role": "user", "content": f"hi {i}"}]})
                assert r.status_code == 200, r.text
            r = c.post("/v1/chat/completions", headers={"x-tiergate-offload": "cloud"},
                       json={"model": "auto", "messages": [{"role": "user", "content": "offload this one"}]})
            assert r.status_code == 200 and r.headers["x-tiergate-model"] == "cloud", r.headers
        threading_wait(lambda: len(agent.edge_history()) >= 3)
        s = Session(browser, url, "any key: this agent has no master key (loopback only)")
        s.view("edge")
        assert s.value("edge-local") == 3 and s.value("edge-offloaded") == 1
        assert s.value("edge-local-share") == 75.0
        status = agent.edge_status()
        assert s.value("edge-outbox") == status["usage_outbox_pending"] == 3  # synced hourly here
        assert s.text("edge-cloud") == "reachable"
        assert s.page.locator("svg.chart").count() >= 3
        s.shot("edge")
        s.view("latency")
        assert s.value("lat-local-requests") == 3
        s.view("budgets")
        assert "no budgets" in s.page.inner_text("#view")
        s.close()
        # The agent's /metrics: Prometheus text with the edge gauges (no store: JSON is 503).
        scrape = httpx.get(url + "/metrics", headers={"accept": "text/plain"}).text
        gauges = {sm.name: sm for fam in text_string_to_metric_families(scrape) for sm in fam.samples}
        assert gauges["tiergate_edge_usage_outbox_pending"].value == 3
        assert gauges["tiergate_edge_cloud_up"].value == 1
        assert httpx.get(url + "/metrics").status_code == 503
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def threading_wait(cond: Any, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)
