"""``POST /v1/route`` takes every door's body shape and explains the plan, calling no model."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_embeddings import EMBED_CATALOG

BODIES = {
    "chat": {"model": "writer", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10},
    "messages": {"model": "writer", "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
    "responses": {"model": "writer", "input": "hi", "max_output_tokens": 10},
    "completions": {"model": "writer", "prompt": "hi", "max_tokens": 10},
    "embeddings": {"model": "auto", "input": ["hi", "there"]},
}


@pytest.fixture
def url(gateway_factory, monkeypatch):
    monkeypatch.setenv("SIM_KEY_A", "sk-sim-a")
    return gateway_factory(EMBED_CATALOG, with_plugins=True)[0]


@pytest.mark.parametrize("door", sorted(BODIES))
def test_route_accepts_each_doors_body(url, sim, door):
    r = httpx.post(url + "/v1/route", params={"door": door}, json=BODIES[door])
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["door"] == door and plan["mode"] == "single" and plan["reason"]
    if door == "embeddings":
        assert plan["candidates"][0]["model"] == "local-embed"
        assert all(c["model"] in ("local-embed", "embed-native", "embed-litellm") for c in plan["candidates"])
    else:
        assert plan["candidates"][0]["model"] == "sonnet" and plan["estimated_max_cost_usd"] > 0
    if door == "messages":
        assert plan["native"] is True  # sonnet speaks Messages natively: the body would pass through
    assert sim.requests() == []


def test_route_rejects_an_unknown_door_and_a_foreign_shape(url):
    assert httpx.post(url + "/v1/route", params={"door": "fax"}, json={}).status_code == 400
    r = httpx.post(url + "/v1/route", params={"door": "messages"}, json=BODIES["responses"])
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
