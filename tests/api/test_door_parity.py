"""The same work through every front door is admitted, limited, billed and recorded the
same: one parametrized scenario per door (chat, Anthropic Messages, Responses, legacy
completions), each with its own virtual key, over real HTTP with the official clients."""

from __future__ import annotations

from collections.abc import Callable

import anthropic
import httpx
import openai
import pytest

from tests.limits.test_e2e_http import fresh_window

MASTER = "sk-master-parity"
CATALOG = """
models:
  - name: fast
    model: openai/parity-1
    adapter: openai-compatible
    tier: 1
    api_base: "{sim}"
    input_cost_per_mtok: 150
    output_cost_per_mtok: 600
"""
USAGE = {"prompt_tokens": 12, "completion_tokens": 7}
COST = (12 * 150 + 7 * 600) / 1e6
RPM = 3


def _chat(url: str, key: str) -> tuple[int, dict[str, str]]:
    raw = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0).chat.completions.with_raw_response.create(
        model="fast", max_tokens=50, messages=[{"role": "user", "content": "same work"}])
    assert raw.parse().choices[0].message.content == "done"
    return raw.status_code, dict(raw.headers)


def _messages(url: str, key: str) -> tuple[int, dict[str, str]]:
    raw = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0).messages.with_raw_response.create(
        model="fast", max_tokens=50, messages=[{"role": "user", "content": "same work"}])
    assert raw.parse().content[0].text == "done"
    return raw.status_code, dict(raw.headers)


def _responses(url: str, key: str) -> tuple[int, dict[str, str]]:
    raw = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0).responses.with_raw_response.create(
        model="fast", max_output_tokens=50, input="same work")
    assert raw.parse().output_text == "done"
    return raw.status_code, dict(raw.headers)


def _completions(url: str, key: str) -> tuple[int, dict[str, str]]:
    raw = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0).completions.with_raw_response.create(
        model="fast", max_tokens=50, prompt="same work")
    assert raw.parse().choices[0].text == "done"
    return raw.status_code, dict(raw.headers)


DOORS: dict[str, Callable[[str, str], tuple[int, dict[str, str]]]] = {
    "chat": _chat, "messages": _messages, "responses": _responses, "completions": _completions}
RATE_LIMITED = {"chat": openai.RateLimitError, "messages": anthropic.RateLimitError,
                "responses": openai.RateLimitError, "completions": openai.RateLimitError}


@pytest.fixture
def parity_gw(gateway_factory, sim):
    sim.set_default("parity-1", {"content": "done", "usage": USAGE})
    url, _ = gateway_factory(CATALOG, master_key=MASTER)
    return url


@pytest.mark.parametrize("door", sorted(DOORS))
def test_same_work_same_limits_budget_and_usage(parity_gw, sim, door):
    admin = httpx.Client(base_url=parity_gw, headers={"authorization": f"Bearer {MASTER}"}, timeout=10)
    made = admin.post("/v1/keys", json={"tenant": f"t-{door}", "rpm": RPM, "daily_budget_usd": 1.0}).json()
    key_id, key = made["id"], made["key"]
    fresh_window()
    remaining = []
    for _ in range(RPM):
        status, headers = DOORS[door](parity_gw, key)
        assert status == 200
        assert headers["x-tiergate-model"] == "fast" and float(headers["x-tiergate-cost-usd"]) == pytest.approx(COST)
        remaining.append(int(headers["x-ratelimit-remaining-requests"]))
    assert remaining == [RPM - 1, RPM - 2, RPM - 3]
    with pytest.raises(RATE_LIMITED[door]) as ei:  # the 4th request in the minute, in the door's error shape
        DOORS[door](parity_gw, key)
    assert ei.value.status_code == 429 and ei.value.response.headers.get("retry-after")
    assert len(sim.requests(model="parity-1")) == RPM  # the refused one never went upstream

    usage = admin.get("/v1/usage", params={"key_id": key_id, "period": "day"}).json()
    recs = usage["data"]
    assert len(recs) == RPM
    for r in recs:
        assert (r["model"], r["tier"], r["prompt_tokens"], r["completion_tokens"], r["outcome"]) == (
            "fast", 1, 12, 7, "ok")
        assert r["cost_usd"] == pytest.approx(COST)
    budget = admin.get("/v1/budget", params={"key_id": key_id}).json()
    key_day = [s for s in budget["scopes"] if s.get("scope") == "key" and s.get("period") == "day"]
    assert key_day, budget
    assert key_day[0]["spent_usd"] == pytest.approx(RPM * COST) and key_day[0]["reserved_usd"] == pytest.approx(0)
