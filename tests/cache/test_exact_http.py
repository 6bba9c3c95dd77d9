"""The exact cache through the ``openai`` SDK over real HTTP, on the gateway under uvicorn
over the upstream simulator: hit, miss, bypass, refresh, TTL expiry, tenant isolation,
stream replay and storing of streamed answers, usage and budget accounting, key settings,
and idempotency kept apart."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

MASTER = "sk-master-cache"
CAT = """
models:
  - {name: m, model: openai/cache-m, adapter: openai-compatible, tier: 1, api_base: "{sim}",
     input_cost_per_mtok: 1000, output_cost_per_mtok: 2000}
  - {name: cheap, model: openai/cache-cheap, adapter: openai-compatible, tier: 0, api_base: "{sim}",
     input_cost_per_mtok: 1, output_cost_per_mtok: 1}
cache:
  exact: {ttl_s: %(ttl)s}
"""
NO_CACHE_CAT = CAT.split("cache:")[0]
Q = [{"role": "user", "content": "What is the capital of France?"}]


def _gw(gateway_factory, ttl: int = 3600, catalog: str | None = None):
    # The record store in memory, the cache in its own SQLite file (as `tiergate serve` has it).
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp(prefix="tg-cache-")) / "cache.sqlite3"
    return gateway_factory(catalog or CAT % {"ttl": ttl}, master_key=MASTER, environment="test", cache_path=path)


def _client(url: str, key: str = MASTER) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def _ask(c: openai.OpenAI, **kw):
    args = {"model": "m", "messages": Q, "temperature": 0, **kw}
    return c.chat.completions.with_raw_response.create(**args)


def _calls(sim) -> int:
    return len(sim.requests(model="cache-m"))


def _admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"authorization": f"Bearer {MASTER}"}, timeout=10)


def _key(url: str, **spec) -> tuple[str, str]:
    r = _admin(url).post("/v1/keys", json=spec)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


def test_miss_then_hit_costs_nothing_and_says_so(gateway_factory, sim):
    url, _ = _gw(gateway_factory)
    c = _client(url)
    first = _ask(c)
    assert first.headers["x-tiergate-cache"] == "stored"
    paid = first.parse()
    assert paid.usage.model_extra["cost_usd"] > 0
    second = _ask(c)
    got = second.parse()
    assert second.headers["x-tiergate-cache"] == "hit"
    assert int(second.headers["x-tiergate-cache-age"]) >= 0
    assert got.choices[0].message.content == paid.choices[0].message.content
    assert got.usage.model_extra["cost_usd"] == 0 and float(second.headers["x-tiergate-cost-usd"]) == 0
    assert got.usage.model_extra["cache_saved_usd"] == pytest.approx(paid.usage.model_extra["cost_usd"])
    assert got.id != paid.id and second.headers["x-request-id"] == got.id
    assert second.headers["x-tiergate-attempts"] == "0" and "cache hit" in second.headers["x-tiergate-route-reason"]
    assert _calls(sim) == 1


def test_a_different_question_or_parameter_misses(gateway_factory, sim):
    url, _ = _gw(gateway_factory)
    c = _client(url)
    _ask(c)
    assert _ask(c, messages=[{"role": "user", "content": "What is the capital of Germany?"}]
                ).headers["x-tiergate-cache"] == "stored"
    assert _ask(c, max_tokens=7).headers["x-tiergate-cache"] == "stored"
    assert _ask(c, messages=[{"role": "system", "content": "Answer in French."}, *Q]
                ).headers["x-tiergate-cache"] == "stored"
    assert _ask(c, model="cheap").headers["x-tiergate-cache"] == "stored"
    assert _calls(sim) == 4 and len(sim.requests(model="cache-cheap")) == 1


def test_normalized_spellings_of_one_request_share_an_entry(gateway_factory, sim):
    url, _ = _gw(gateway_factory)
    base = {"model": "m", "temperature": 0, "messages": Q}
    assert httpx.post(url + "/v1/chat/completions", json=base,
                      headers={"authorization": f"Bearer {MASTER}"}).headers["x-tiergate-cache"] == "stored"
    # Other key order, whitespace, explicit defaults, a text-part list, 0.0 for 0: one request.
    raw = ('{ "messages" : [ {"content": [{"type": "text", "text": "What is the capital of France?"}],'
           ' "role": "user"} ], "top_p": 1, "n": 1, "temperature": 0.0, "model": "m", "user": "u1" }')
    r = httpx.post(url + "/v1/chat/completions", content=raw,
                   headers={"authorization": f"Bearer {MASTER}", "content-type": "application/json"})
    assert r.status_code == 200 and r.headers["x-tiergate-cache"] == "hit"
    assert _calls(sim) == 1


def test_sampled_requests_are_not_cached_by_default(gateway_factory, sim):
    url, _ = _gw(gateway_factory)
    c = _client(url)
    r = _ask(c, temperature=0.7)
    assert r.headers["x-tiergate-cache"] == "bypass"
    assert "not deterministic" in r.headers["x-tiergate-cache-reason"]
    assert _ask(c, temperature=0.7).headers["x-tiergate-cache"] == "bypass"
    # A seed makes a sampled request deterministic: cached.
    assert _ask(c, temperature=0.7, seed=7).headers["x-tiergate-cache"] == "stored"
    assert _ask(c, temperature=0.7, seed=7).headers["x-tiergate-cache"] == "hit"
    assert _calls(sim) == 3


def test_bypass_neither_reads_nor_writes_and_refresh_replaces(gateway_factory, sim):
    url, _ = _gw(gateway_factory)
    c = _client(url)
    by = _ask(c, extra_headers={"x-tiergate-cache": "bypass"})
    assert by.headers["x-tiergate-cache"] == "bypass"
    assert _ask(c).headers["x-tiergate-cache"] == "stored"  # bypass stored nothing
    assert _ask(c, extra_headers={"x-tiergate-cache": "bypass"}).headers["x-tiergate-cache"] == "bypass"
    assert _calls(sim) == 3
    sim.script("cache-m", {"content": "Paris (refreshed)."})
    fresh = _ask(c, extra_headers={"x-tiergate-cache": "refresh"})
    assert fresh.headers["x-tiergate-cache"] == "stored" and _calls(sim) == 4
    again = _ask(c)
    assert again.headers["x-tiergate-cache"] == "hit"
    assert again.parse().choices[0].message.content == "Paris (refreshed)."
    bad = httpx.post(url + "/v1/chat/completions", json={"model": "m", "messages": Q},
                     headers={"authorization": f"Bearer {MASTER}", "x-tiergate-cache": "sometimes"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-tiergate-cache"


def test_entries_expire_after_their_ttl(gateway_factory, sim):
    url, _ = _gw(gateway_factory, ttl=1)
    c = _client(url)
    assert _ask(c).headers["x-tiergate-cache"] == "stored"
    assert _ask(c).headers["x-tiergate-cache"] == "hit"
    time.sleep(1.2)
    assert _ask(c).headers["x-tiergate-cache"] == "stored"
    assert _calls(sim) == 2


def test_tenants_never_share_entries_and_keys_of_one_tenant_do(gateway_factory, sim):
    url, _ = _gw(gateway_factory)
    _, acme1 = _key(url, tenant="acme")
    _, acme2 = _key(url, tenant="acme")
    _, other = _key(url, tenant="globex")
    assert _ask(_client(url, acme1)).headers["x-tiergate-cache"] == "stored"
    assert _ask(_client(url, acme2)).headers["x-tiergate-cache"] == "hit"
    assert _ask(_client(url, other)).headers["x-tiergate-cache"] == "stored"
    assert _ask(_client(url, MASTER)).headers["x-tiergate-cache"] == "stored"
    assert _calls(sim) == 3


def test_a_cached_answer_replays_as_a_stream(gateway_factory, sim):
    url, _ = _gw(gateway_factory)
    c = _client(url)
    paid = _ask(c).parse()
    with c.chat.completions.with_streaming_response.create(
            model="m", messages=Q, temperature=0, stream=True, stream_options={"include_usage": True}) as r:
        assert r.headers["x-tiergate-cache"] == "hit"
        chunks = list(r.parse())
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == paid.choices[0].message.content
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == paid.usage.completion_tokens
    assert chunks[-1].usage.model_extra["cost_usd"] == 0
    # Without include_usage the usage chunk is left out, as for a live stream.
    plain = list(c.chat.completions.create(model="m", messages=Q, temperature=0, stream=True))
    assert all(ch.usage is None for ch in plain) and plain[-1].choices[0].finish_reason == "stop"
    assert _calls(sim) == 1


def test_a_streamed_answer_is_stored_once_complete_and_a_cut_stream_never(gateway_factory, sim):
    url, _ = _gw(gateway_factory)
    c = _client(url)
    q2 = [{"role": "user", "content": "Name three rivers in Europe, please."}]
    with c.chat.completions.with_streaming_response.create(model="m", messages=q2, temperature=0, stream=True) as r:
        assert r.headers["x-tiergate-cache"] == "miss"  # headers leave before the answer exists
        streamed = "".join(ch.choices[0].delta.content or "" for ch in r.parse() if ch.choices)
    hit = _ask(c, messages=q2)
    assert hit.headers["x-tiergate-cache"] == "hit" and hit.parse().choices[0].message.content == streamed
    # A stream the upstream cuts short is not an answer: nothing is stored.
    q3 = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]
    sim.script("cache-m", {"disconnect_after": 2})
    with pytest.raises(openai.APIError):
        list(c.chat.completions.create(model="m", messages=q3, temperature=0, stream=True))
    assert _ask(c, messages=q3).headers["x-tiergate-cache"] == "stored"
    assert _calls(sim) == 3


def test_hits_are_free_in_the_ledger_budgets_usage_and_metrics(gateway_factory, sim):
    url, _ = _gw(gateway_factory)
    key_id, secret = _key(url, tenant="acme", daily_budget_usd=50)
    c = _client(url, secret)
    paid = _ask(c).parse()
    spent = _spent(url, secret)
    for _ in range(3):
        assert _ask(c).headers["x-tiergate-cache"] == "hit"
    assert _spent(url, secret) == pytest.approx(spent)  # no reservation, no spend
    use = httpx.get(url + "/v1/usage", params={"period": "all"}, headers={"authorization": f"Bearer {secret}"}).json()
    recs = sorted(use["data"], key=lambda r: r["ts"])
    assert [r["cache_hit"] for r in recs] == [False, True, True, True]
    cost = paid.usage.model_extra["cost_usd"]
    assert all(r["cost_usd"] == 0 and r["saved_usd"] == pytest.approx(cost) and r["outcome"] == "cache_hit"
               for r in recs[1:])
    summary = use["summary"]["cache"]
    assert summary["hits"] == 3 and summary["hit_rate"] == 0.75
    assert summary["saved_usd"] == pytest.approx(3 * cost) and summary["per_tier"]["1"]["hit_rate"] == 0.75
    m = _admin(url).get("/metrics").json()
    assert m["cache_hits_per_tier"]["1"] == 3 and m["cache_hit_rate_per_tier"]["1"] == 0.75
    assert m["cache_saved_usd_per_tier"]["1"] == pytest.approx(3 * cost, rel=1e-3)
    assert m["cost_per_tier"]["1"] == pytest.approx(cost, rel=1e-3)


def _spent(url: str, secret: str) -> float:
    bud = httpx.get(url + "/v1/budget", headers={"authorization": f"Bearer {secret}"}).json()
    day = next(s for s in bud["scopes"] if s["scope"] == "key" and s["period"] == "day")
    assert day["reserved_usd"] == 0
    return day["spent_usd"]


def test_a_hit_is_served_over_an_exhausted_budget_but_never_to_a_key_barred_from_the_model(gateway_factory, sim):
    url, _ = _gw(gateway_factory)
    _, rich = _key(url, tenant="acme")
    assert _ask(_client(url, rich)).headers["x-tiergate-cache"] == "stored"
    # A tier-0-only key of the same tenant never gets the tier-1 model's answer.
    _, cheap_only = _key(url, tenant="acme", allowed_tiers=[0])
    with pytest.raises(openai.PermissionDeniedError):
        _ask(_client(url, cheap_only))
    assert _calls(sim) == 1


def test_key_settings_turn_the_cache_off_or_on(gateway_factory, sim):
    url, _ = _gw(gateway_factory)
    _, off = _key(url, tenant="acme", cache="off")
    c = _client(url, off)
    assert _ask(c).headers["x-tiergate-cache"] == "bypass"
    assert _ask(c).headers["x-tiergate-cache"] == "bypass"
    assert _calls(sim) == 2
    # A catalog without a cache section: a key may still opt in, with the defaults.
    url2, _ = _gw(gateway_factory, catalog=NO_CACHE_CAT)
    assert "x-tiergate-cache" not in _ask(_client(url2)).headers
    _, on = _key(url2, tenant="acme", cache="exact")
    assert _ask(_client(url2, on)).headers["x-tiergate-cache"] == "stored"
    assert _ask(_client(url2, on)).headers["x-tiergate-cache"] == "hit"
    assert _admin(url2).post("/v1/keys", json={"cache": "always"}).status_code == 400


def test_an_idempotent_replay_is_not_a_cache_hit(gateway_factory, sim):
    url, _ = _gw(gateway_factory)
    h = {"authorization": f"Bearer {MASTER}", "idempotency-key": "once-1"}
    body = {"model": "m", "messages": Q, "temperature": 0}
    first = httpx.post(url + "/v1/chat/completions", json=body, headers=h)
    again = httpx.post(url + "/v1/chat/completions", json=body, headers=h)
    assert first.headers["x-tiergate-cache"] == "stored"
    assert again.headers["x-tiergate-idempotent-replay"] == "true" and "x-tiergate-cache" not in again.headers
    recs = httpx.get(url + "/v1/usage", params={"period": "all"}, headers=h).json()["data"]
    assert [r["cache_hit"] for r in recs] == [False]
    # A new idempotency key for the same question is a new request: a cache hit.
    hit = httpx.post(url + "/v1/chat/completions", json=body, headers={**h, "idempotency-key": "once-2"})
    assert hit.headers["x-tiergate-cache"] == "hit" and _calls(sim) == 1


def test_an_answer_from_a_fallback_model_is_not_stored_under_the_planned_one(gateway_factory, sim):
    url, _ = _gw(gateway_factory)
    c = _client(url)
    sim.script("cache-cheap", {"status": 500, "count": 2})  # both attempts at tier 0 fail: tier 1 answers
    r = _ask(c, model="cheap")
    assert r.headers["x-tiergate-model"] == "m" and r.headers["x-tiergate-cache"] == "miss"
    assert "not the planned cheap" in r.headers["x-tiergate-cache-reason"]
    again = _ask(c, model="cheap")
    assert again.headers["x-tiergate-model"] == "cheap" and again.headers["x-tiergate-cache"] == "stored"
    assert _ask(c, model="cheap").headers["x-tiergate-cache"] == "hit"
