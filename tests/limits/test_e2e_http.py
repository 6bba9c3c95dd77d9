"""End to end over real HTTP (uvicorn) with the official ``openai`` SDK: virtual keys made
through the admin API, documented 429s for rate and budget limits, the soft-limit tier
downgrade, usage/budget/metrics views -- on SQLite and on DynamoDB (dynalite)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.gateway import serve_app
from tiergate.compose import build_app
from tiergate.config import catalog as catalog_mod
from tiergate.settings import Settings

MASTER = "sk-master-e2e"
CATALOG = """
models:
  - name: cheap
    model: openai/cheap-0
    adapter: openai-compatible
    tier: 0
    api_base: "{sim}"
    input_cost_per_mtok: 1
    output_cost_per_mtok: 1
  - name: mid
    model: openai/mid-1
    adapter: openai-compatible
    tier: 1
    api_base: "{sim}"
    input_cost_per_mtok: 100
    output_cost_per_mtok: 100
budgets:
  soft_limit_fraction: 0.5
"""


@pytest.fixture(params=["sqlite", "dynamodb"])
def gateway(request, sim, tmp_path) -> Iterator[str]:
    kw: dict = {"environment": "test", "master_key": MASTER, "data_dir": tmp_path / "data", "key_cache_ttl_s": 0.2}
    if request.param == "dynamodb":
        kw |= request.getfixturevalue("dynalite_tables")
    else:
        kw |= {"store": "sqlite", "sqlite_path": tmp_path / "gw.sqlite3"}
    cat = catalog_mod.parse(CATALOG.replace("{sim}", sim.openai_base), source="test")
    with serve_app(build_app(Settings(**kw), cat)) as url:
        yield url


def admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"authorization": f"Bearer {MASTER}"}, timeout=10)


def make_key(url: str, **spec) -> tuple[str, str]:
    r = admin(url).post("/v1/keys", json=spec)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


def client(url: str, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0)


def chat(c: openai.OpenAI, model: str = "cheap", max_tokens: int = 50):
    return c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=max_tokens)


def fresh_window(margin: float = 8.0) -> None:
    """Wait for a new minute window if the current one is about to end."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.05)


def test_key_admin_api(gateway: str):
    a = admin(gateway)
    key_id, secret = make_key(gateway, tenant="acme", daily_budget_usd=5, allowed_tiers=[0, 1], rpm=10)
    got = a.get(f"/v1/keys/{key_id}").json()
    assert got["tenant"] == "acme" and got["rpm"] == 10 and "key" not in got
    assert [k["id"] for k in a.get("/v1/keys", params={"tenant": "acme"}).json()["data"]] == [key_id]
    assert a.patch(f"/v1/keys/{key_id}", json={"rpm": 20}).json()["rpm"] == 20
    r = a.patch(f"/v1/keys/{key_id}", json={"tenant": "other"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert a.post("/v1/keys", json={"rpm": -1}).status_code == 400
    assert a.get("/v1/keys/key_0000000000000000").status_code == 404
    # the key works, may not administer, and stops working once revoked (after the cache window)
    assert chat(client(gateway, secret)).http_response.status_code == 200
    r = httpx.get(gateway + "/v1/keys", headers={"authorization": f"Bearer {secret}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    assert a.delete(f"/v1/keys/{key_id}").json()["revoked"] is True
    time.sleep(0.3)
    with pytest.raises(openai.AuthenticationError):
        chat(client(gateway, secret))


def test_rate_limited_requests_get_openai_style_429(gateway: str):
    _, secret = make_key(gateway, tenant="acme", rpm=2)
    c = client(gateway, secret)
    fresh_window()
    first = chat(c)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert chat(c).headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as e:
        chat(c)
    err = e.value
    assert err.status_code == 429 and err.code == "rate_limit_exceeded"
    assert 1 <= int(err.response.headers["retry-after"]) <= 60
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_budget_exceeded_and_soft_limit_downgrade(gateway: str):
    # mid (tier 1) costs $100/M tokens: 'hi' + 100 output tokens may cost ~$0.0101.
    key_id, secret = make_key(gateway, tenant="acme", monthly_budget_usd=0.015)
    c = client(gateway, secret)
    r = chat(c, "tier:1", max_tokens=100)  # reserving it crosses 50 % of the budget
    assert r.headers["x-tiergate-tier"] == "0"
    assert r.headers["x-tiergate-budget"].startswith("soft-limit; scope=key; period=month")
    assert "budget" in r.headers["x-tiergate-route-reason"]
    # The ceiling is known before planning now: the next tier-1 request is planned at tier 0
    # at once (no re-plan), and is refused only when even tier 0 cannot fit.
    r = chat(c, "tier:1", max_tokens=160)
    assert r.headers["x-tiergate-tier"] == "0" and "capped at tier 0 by budget" in r.headers["x-tiergate-route-reason"]
    with pytest.raises(openai.RateLimitError) as e:  # 20k tier-0 output tokens cannot fit any more
        chat(c, "tier:1", max_tokens=20_000)
    body = e.value.body
    assert e.value.code == "budget_exceeded" and body["type"] == "insufficient_quota"
    assert body["tiergate"]["scope"] == "key" and body["tiergate"]["period"] == "month"
    assert body["tiergate"]["limit"] == 0.015

    # the views: own usage, own budget; the master sees the tenant and the metrics
    time.sleep(0.2)  # settlement runs right after the response
    mine = httpx.get(gateway + "/v1/usage", headers={"authorization": f"Bearer {secret}"}).json()
    assert mine["summary"]["requests"] == 2 and {d["tier"] for d in mine["data"]} == {0} and mine["data"][0]["key_id"] == key_id
    bud = httpx.get(gateway + "/v1/budget", headers={"authorization": f"Bearer {secret}"}).json()
    month = next(s for s in bud["scopes"] if s["scope"] == "key")
    assert month["reserved_usd"] == 0 and 0 < month["spent_usd"] < 0.001
    r = httpx.get(gateway + "/v1/usage", params={"tenant": "other"}, headers={"authorization": f"Bearer {secret}"})
    assert r.status_code == 403
    a = admin(gateway)
    assert a.get("/v1/usage", params={"tenant": "acme", "tier": "0"}).json()["summary"]["requests"] == 2
    assert a.get("/v1/usage", params={"tier": "9"}).status_code == 400
    m = a.get("/metrics").json()
    assert m["requests_per_tier"] == {"0": 2} and m["cost_per_tier"]["0"] > 0
    assert a.post("/v1/admin/reset", json={"budgets": True}).json()["budget_counters"] >= 1
    assert a.get("/metrics").json()["requests_per_tier"] == {}


def test_a_key_budget_never_bills_an_unpriced_model_at_zero(sim, tmp_path):
    """A virtual key with a budget asking for a model nobody knows the price of gets a 400
    naming the fix, and ``auto`` routes it to a priced model instead; a key without a
    budget still uses the unpriced one."""
    cat = catalog_mod.parse(f"""
models:
  - {{name: mystery, model: openai/mystery-0, adapter: openai-compatible, tier: 0, api_base: "{sim.openai_base}"}}
  - {{name: priced, model: openai/priced-1, adapter: openai-compatible, tier: 1, api_base: "{sim.openai_base}",
     input_cost_per_mtok: 1, output_cost_per_mtok: 1}}
routing: {{task_tiers: {{general: 0}}}}
""", source="test")
    settings = Settings(environment="test", master_key=MASTER, data_dir=tmp_path / "data", store="sqlite",
                        sqlite_path=tmp_path / "gw.sqlite3", key_cache_ttl_s=0.2)
    with serve_app(build_app(settings, cat)) as url:
        _, only_mystery = make_key(url, daily_budget_usd=1, allowed_models=["mystery"])
        with pytest.raises(openai.BadRequestError) as e:
            chat(client(url, only_mystery), "mystery")
        assert e.value.code == "price_unknown" and e.value.param == "model"
        assert "no known price" in e.value.message and "input_cost_per_mtok" in e.value.message
        _, budgeted = make_key(url, daily_budget_usd=1)
        r = chat(client(url, budgeted), "auto")
        assert r.headers["x-tiergate-model"] == "priced" and "no known price" in r.headers["x-tiergate-route-reason"]
        assert float(r.headers["x-tiergate-cost-usd"]) > 0
        _, free = make_key(url)
        assert chat(client(url, free), "tier:0").headers["x-tiergate-model"] == "mystery"
