"""What ``model`` means (aliases, tier:N, auto), the dry run, and the simple API."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize("prompt, task, tier", [
    ("Write a Python function that parses ISO dates", "coding", 0),
    ("Pythonでデータベース接続の関数を実装して", "coding", 0),
    ("What is the capital of France?", "general", 1),
    ("量子力学について説明して", "general", 1),
    ("Compare the trade-offs of these two architecture designs and evaluate the risks", "analysis", 2),
    ("システム設計方針を比較・分析してください", "analysis", 2),
    ("Draft our company's critical strategy for the board", "premium", 3),
    ("重要な経営戦略を立案してください", "premium", 3),
])
def test_auto_picks_the_cheapest_capable_tier(client, prompt, task, tier):
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": prompt}])
    assert raw.headers["x-tiergate-tier"] == str(tier), raw.headers["x-tiergate-route-reason"]
    assert f"task={task}" in raw.headers["x-tiergate-route-reason"]


def test_aliases_and_tiers(client):
    for model, name in (("writer", "sonnet"), ("critic", "premium"), ("coder", "cheap-coder"), ("tier:3", "premium")):
        raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "x"}])
        assert raw.headers["x-tiergate-model"] == name, model


def test_context_window_is_respected(client):
    # cheap-coder has a 2000-token window: a long coding prompt must not go there.
    long = "def f():\n    return 1\n" * 600
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "fix this python code:\n" + long}])
    assert raw.headers["x-tiergate-tier"] == "1"
    reason = raw.headers["x-tiergate-route-reason"]
    assert "tier 0 had no usable deployment (cheap-coder: context 2000 too small" in reason, reason


def test_route_dry_run_calls_no_model(gw, sim):
    r = httpx.post(gw[0] + "/v1/route", json={
        "model": "auto", "messages": [{"role": "user", "content": "implement a rust function"}]})
    assert r.status_code == 200
    d = r.json()
    assert d["task_type"] == "coding" and d["tier"] == 0
    assert d["candidates"][0]["model"] == "cheap-coder"
    assert d["estimated_max_cost_usd"] > 0
    assert sim.requests() == []


def test_vision_needs_a_vision_model(gw):
    img = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    d = httpx.post(gw[0] + "/v1/route", json={"model": "auto", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what is in this picture?"}, img]}]}).json()
    assert d["candidates"][0]["model"] == "premium"
    assert any("lacks vision" in s["why"] for s in d["skipped"])


def test_generate_and_code(gw, sim):
    r = httpx.post(gw[0] + "/generate", json={"prompt": "Tell me about tides", "task_type": "general"})
    body = r.json()
    assert r.status_code == 200
    wire = {"fast": "fast-a", "fast-b": "fast-b"}[body["model_used"]]  # tier 1 balances over both
    assert body["response"] == f"echo: Tell me about tides [model={wire}]"
    assert body["tier_used"] == 1 and body["cost_usd"] > 0
    r = httpx.post(gw[0] + "/generate", json={"prompt": "anything", "preferred_tier": 3})
    assert r.json()["model_used"] == "premium"
    r = httpx.post(gw[0] + "/code", json={"task": "reverse a list", "language": "javascript", "include_tests": True})
    body = r.json()
    assert body["tier_used"] == 0 and body["model_used"] == "cheap-coder" and body["language"] == "javascript"
    sent = sim.requests(model="coder-0")[-1]["body"]["messages"]
    assert "javascript" in sent[0]["content"] and "unit tests" in sent[1]["content"]


def test_models_info_health(gw):
    ids = [m["id"] for m in httpx.get(gw[0] + "/v1/models").json()["data"]]
    assert {"fast", "fast-b", "sonnet", "writer", "auto", "tier:0", "tier:3"} <= set(ids)
    info = httpx.get(gw[0] + "/info").json()
    assert set(info["tiers"]) == {"0", "1", "2", "3"} and info["aliases"]["writer"] == "sonnet"
    health = httpx.get(gw[0] + "/health").json()
    assert health["status"] == "ok" and "fast" in health["available_models"]


def test_model_without_key_is_unavailable_and_skipped(gateway_factory, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    url, _ = gateway_factory("""
models:
  - {name: keyed, model: openai/keyed, adapter: openai-compatible, tier: 1, api_base: "{sim}", api_key_env: NO_SUCH_KEY}
  - {name: open, model: openai/open, adapter: openai-compatible, tier: 2, api_base: "{sim}"}
""")
    health = httpx.get(url + "/health").json()
    keyed = next(d for d in health["deployments"] if d["model"] == "keyed")
    assert keyed["available"] is False and "NO_SUCH_KEY" in keyed["unavailable_reason"]
    r = httpx.post(url + "/v1/chat/completions", json={"model": "keyed", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200 and r.headers["x-tiergate-model"] == "open"
    assert "NO_SUCH_KEY" in r.headers["x-tiergate-route-reason"]


def test_a_capability_no_model_has_is_a_400_naming_it_also_in_the_dry_run(gw):
    # Finding 4: a capability mismatch is the request's problem, not a retryable 503.
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}}
    for path in ("/v1/chat/completions", "/v1/route"):
        r = httpx.post(gw[0] + path, json=body, timeout=30)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["code"] == "capability_not_supported" and err["param"] == "response_format"
        assert "json_schema" in err["message"] and err["tiergate"]["missing"] == ["json_schema"]
    # An explicit model that lacks it, its fallbacks (tiers 0-1) too: 400 naming vision.
    img = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    r = httpx.post(gw[0] + "/v1/chat/completions", timeout=30, json={"model": "cheap-coder", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what is this?"}, img]}]})
    assert r.status_code == 400 and r.json()["error"]["tiergate"]["missing"] == ["vision"]
