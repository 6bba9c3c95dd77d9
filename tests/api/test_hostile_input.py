"""Hostile and sloppy input gets a clear OpenAI-shaped 4xx, never a 500, and stored data
never breaks a read (findings 3, 4, 5, 6, 10, 11)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from pydantic import ValidationError

from tiergate.settings import Settings

CAT = """
models:
  - {name: m, model: openai/hostile-m, adapter: openai-compatible, tier: 1, api_base: "{sim}",
     input_cost_per_mtok: 1, output_cost_per_mtok: 2}
"""
MASTER = "sk-master-hostile"
H = {"authorization": f"Bearer {MASTER}"}


def nested(depth: int, leaf: object = 1) -> object:
    v = leaf
    for _ in range(depth - 1):
        v = [v]
    return v


@pytest.fixture
def gw(gateway_factory):
    url, app = gateway_factory(CAT, master_key=MASTER)
    return url, app


def _err(r: httpx.Response, status: int = 400) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    return err


def chat(url: str, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers or H, timeout=20)


# --- finding 4: nesting depth and size, at parse -------------------------------------------


@pytest.mark.parametrize("depth", [65, 300, 1000, 2000])
def test_deep_nesting_is_a_400_on_every_body_taking_route(gw, sim, depth):
    url, _ = gw
    deep = nested(depth)
    bodies = {
        "/v1/chat/completions": {"model": "m", "messages": [{"role": "user", "content": "x"}], "metadata": deep},
        "/v1/route": {"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "x": deep}]}]},
        "/v1/keys": {"tenant": "t", "metadata": {"a": deep}},
        "/generate": {"prompt": "x", "extra": deep},
        "/v1/usage/ingest": {"records": [{"id": "a", "ts": time.time(), "x": deep}]},
    }
    for path, body in bodies.items():
        raw = httpx.post(url + path, json=body, headers=H, timeout=20) if depth < 1000 else httpx.post(
            url + path, content=b'{"a":' + b"[" * depth + b"]" * depth + b"}", headers=H, timeout=20)
        err = _err(raw)
        assert "nests deeper" in err["message"] or "not valid JSON" in err["message"], (path, err)
    assert sim.requests() == []


def test_deep_tool_parameters_are_refused_before_any_call(gw, sim):
    url, _ = gw
    params = {"type": "object", "properties": {"a": nested(40, {"type": "string"})}}
    err = _err(chat(url, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                          "tools": [{"type": "function", "function": {"name": "f", "parameters": params}}]}))
    assert err["type"] == "invalid_request_error"
    assert sim.requests() == []


# --- finding 10: strict types, like OpenAI's -------------------------------------------------


@pytest.mark.parametrize("extra,param", [
    ({"stream": "yes"}, "stream"), ({"temperature": False}, "temperature"), ({"max_tokens": "10"}, "max_tokens"),
    ({"top_p": "0.5"}, "top_p"), ({"n": True}, "n"), ({"stop": [1]}, "stop"), ({"seed": 1.5}, "seed"),
    ({"stream_options": {"include_usage": "true"}}, "stream_options.include_usage"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "strin"}}}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                              "required": "a"}}}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!", "parameters": {}}}]}, "tools"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"type": 7}}}}}}, "response_format"),
])
def test_lax_values_are_refused_as_openai_does(gw, sim, extra, param):
    url, _ = gw
    err = _err(chat(url, {"model": "m", "messages": [{"role": "user", "content": "x"}], **extra}))
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_request"
    assert err["param"].startswith(param), err
    assert sim.requests() == []


def test_valid_tools_and_schemas_still_pass(gw, sim):
    url, _ = gw
    params = {"type": "object", "properties": {"city": {"type": "string", "enum": ["a", "b"]},
                                               "n": {"type": ["integer", "null"], "minimum": 0}},
              "required": ["city"], "additionalProperties": False}
    r = chat(url, {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 1,
                   "max_tokens": 10, "stream": False,
                   "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": params}}]})
    assert r.status_code == 200, r.text


# --- finding 6: header values safe by construction ---------------------------------------------


def test_model_with_a_newline_is_a_400_not_a_dropped_reply(gw, sim):
    url, _ = gw
    err = _err(chat(url, {"model": "tier:1\n", "messages": [{"role": "user", "content": "x"}]}))
    assert err["param"] == "model"
    assert sim.requests() == []


def test_stored_replay_headers_are_made_safe(gw, sim):
    url, app = gw
    body = {"model": "m", "messages": [{"role": "user", "content": "replay me"}]}
    h = {**H, "idempotency-key": "k-1"}
    assert chat(url, body, h).status_code == 200
    # Someone (an old version, a bad write) stored a header value no server may send.
    store = app.state.services.store
    rec = asyncio.run(store.get("idempotency", "master#k-1", "idem"))
    rec["response_headers"]["x-tiergate-route-reason"] = "bad\r\nset-cookie: x=1"
    asyncio.run(store.put("idempotency", rec))
    again = chat(url, body, h)
    assert again.status_code == 200 and again.headers["x-tiergate-idempotent-replay"] == "true"
    assert "set-cookie" not in again.headers and "\n" not in again.headers["x-tiergate-route-reason"]


# --- findings 3 and 5: strict ingest, its scope, and reads that stored data cannot break ----


def _key(url: str, **spec) -> tuple[str, str]:
    r = httpx.post(url + "/v1/keys", json={"tenant": "acme", **spec}, headers=H)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


def _rec(**kw) -> dict:
    return {"id": "edge-1", "ts": time.time() - 60, "model": "local", "tier": 0, "prompt_tokens": 3,
            "completion_tokens": 4, "cost_usd": 0.0, "source": "edge", "device": "pi", **kw}


def test_ingest_needs_the_usage_ingest_scope(gw):
    url, _ = gw
    _, plain = _key(url)
    _, edge = _key(url, scopes=["usage:ingest"])
    r = httpx.post(url + "/v1/usage/ingest", json={"records": [_rec()]}, headers={"authorization": f"Bearer {plain}"})
    assert _err(r, 403)["type"] == "permission_error"
    r = httpx.post(url + "/v1/usage/ingest", json={"records": [_rec()]}, headers={"authorization": f"Bearer {edge}"})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    _err(httpx.post(url + "/v1/keys", json={"tenant": "t", "scopes": ["admin"]}, headers=H))


@pytest.mark.parametrize("bad", [
    {"ts": 1e20}, {"ts": -5}, {"ts": "not a time"}, {"ts": "2999-01-01T00:00:00Z"}, {"cost_usd": 999},
    {"cost_usd": -1}, {"prompt_tokens": "3"}, {"prompt_tokens": 10**12}, {"tier": 9}, {"nested": [[[1]]]},
    {"model": "x\n"}, {"id": ""}, {"outcome": "OK <script>"}, {"cache_hit": "no"}, {"latency_ms": float("inf")},
])
def test_ingest_validates_every_field(gw, bad):
    url, _ = gw
    r = httpx.post(url + "/v1/usage/ingest", content=__import__("json").dumps({"records": [_rec(**bad)]}),
                   headers={**H, "content-type": "application/json"})
    assert r.status_code == 400, (bad, r.text)
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_stored_records_and_keys_never_break_a_read(gw):
    url, app = gw
    store = app.state.services.store
    kid, _ = _key(url)
    # What older versions let in: a deep array in a usage record, deep key metadata.
    asyncio.run(store.put("usage", {"pk": kid, "sk": "2030-01-01T00:00:00.000Z#x", "ts": "2030-01-01T00:00:00.000Z",
                                    "tenant": "acme", "cost_usd": "999", "junk": nested(300),
                                    "expires_at": int(time.time()) + 3600}))
    key = asyncio.run(store.query("keys", kid))[0]
    asyncio.run(store.put("keys", {**key, "metadata": {"deep": nested(300)}}))
    for who in ("", f"&key_id={kid}"):
        r = httpx.get(url + "/v1/usage?period=all" + who, headers=H)
        assert r.status_code == 200, r.text
        assert all("junk" not in x for x in r.json()["data"])
    r = httpx.get(url + "/v1/keys", headers=H)
    assert r.status_code == 200 and any(k["id"] == kid for k in r.json()["data"])
    assert httpx.get(url + f"/v1/keys/{kid}", headers=H).status_code == 200


# --- finding 11 -------------------------------------------------------------------------------


def test_empty_master_key_is_refused(monkeypatch):
    for blank in ("", "   "):
        with pytest.raises(ValidationError, match="empty"):
            Settings(master_key=blank)


def test_health_warns_without_a_master_key(gateway_factory):
    url, _ = gateway_factory(CAT)
    auth = httpx.get(url + "/health").json()["auth"]
    assert auth["master_key"] is False and "any bearer token" in auth["warning"]


def test_max_tokens_beyond_every_context_is_a_400(gateway_factory):
    """Found by the fuzz suite: a request no model's context can hold is the client's to
    fix (OpenAI: 400), not a 503 -- also when the catalog has embedding models."""
    cat = """
models:
  - {name: m, model: openai/hostile-m, adapter: openai-compatible, tier: 1, api_base: "{sim}",
     input_cost_per_mtok: 1, output_cost_per_mtok: 2, context_window: 1000}
  - {name: e, model: openai/hostile-e, adapter: openai-compatible, tier: 1, api_base: "{sim}",
     input_cost_per_mtok: 1, capabilities: [embeddings]}
"""
    url, _ = gateway_factory(cat, master_key=MASTER)
    err = _err(chat(url, {"messages": [{"role": "user", "content": "x"}], "max_tokens": 50_000_000}))
    assert err["code"] == "context_length_exceeded"
