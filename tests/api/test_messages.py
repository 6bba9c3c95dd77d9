"""The Anthropic Messages door through the official ``anthropic`` SDK over real HTTP:
translation to an OpenAI-speaking upstream (``fast``) and native passthrough to an
Anthropic-speaking one (``sonnet``: litellm ``anthropic/...``), streaming text and tool
use, count_tokens, and Anthropic-shaped errors."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

TOOLS = [{"name": "get_weather", "description": "weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture
def ac(gw):
    return anthropic.Anthropic(base_url=gw[0], api_key="unused", max_retries=0)


def test_create_translated_to_an_openai_upstream(ac, sim):
    raw = ac.messages.with_raw_response.create(
        model="fast", max_tokens=64, system=[{"type": "text", "text": "be brief"}], extra_body={"temperature": 0.3},
        stop_sequences=["\n\n"], metadata={"user_id": "u-1"},
        messages=[{"role": "user", "content": "hello there"}])
    m = raw.parse()
    assert m.type == "message" and m.role == "assistant" and m.stop_reason == "end_turn"
    assert m.content[0].text == "echo: hello there [model=fast-a]"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0
    assert raw.headers["x-tiergate-model"] == "fast" and raw.headers["x-tiergate-tier"] == "1"
    expected = (m.usage.input_tokens * 0.15 + m.usage.output_tokens * 0.60) / 1e6
    assert float(raw.headers["x-tiergate-cost-usd"]) == pytest.approx(expected, abs=1e-9)
    (req,) = sim.requests(model="fast-a")
    assert req["path"] == "/v1/chat/completions"
    body = req["body"]
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    assert body["max_tokens"] == 64 and body["temperature"] == 0.3 and body["stop"] == ["\n\n"]
    assert body["user"] == "u-1"


def test_tool_use_round_trip_translated(ac, sim):
    msgs = [{"role": "user", "content": "weather in Paris?"}]
    m = ac.messages.create(model="fast", max_tokens=64, tools=TOOLS, tool_choice={"type": "any"}, messages=msgs)
    assert m.stop_reason == "tool_use"
    (use,) = [b for b in m.content if b.type == "tool_use"]
    assert use.name == "get_weather" and "city" in use.input
    sent = sim.requests(model="fast-a")[0]["body"]
    assert sent["tools"][0]["function"]["parameters"] == TOOLS[0]["input_schema"]
    assert sent["tool_choice"] == "required"
    msgs += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21C"}]}]
    m2 = ac.messages.create(model="fast", max_tokens=64, tools=TOOLS, messages=msgs)
    assert m2.content[0].text.startswith("tool said: sunny, 21C")
    follow = sim.requests(model="fast-a")[1]["body"]["messages"]
    assert follow[1]["tool_calls"][0]["id"] == use.id
    assert follow[2] == {"role": "tool", "tool_call_id": use.id, "content": "sunny, 21C"}


def test_stream_text_translated(ac):
    with ac.messages.stream(model="fast-b", max_tokens=64,
                            messages=[{"role": "user", "content": "one two three four"}]) as s:
        kinds = [ev.type for ev in s]
        text = s.get_final_text()
        final = s.get_final_message()
    assert text == "echo: one two three four [model=fast-b]"
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


def test_stream_tool_use_delivers_input_json_incrementally(ac, sim):
    sim.script("fast-a", {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris, France", "unit": "C"}}]})
    deltas = []
    with ac.messages.stream(model="fast", max_tokens=64, tools=TOOLS,
                            messages=[{"role": "user", "content": "weather?"}]) as s:
        for ev in s:
            if ev.type == "content_block_delta" and ev.delta.type == "input_json_delta":
                deltas.append(ev.delta.partial_json)
        final = s.get_final_message()
    assert len(deltas) >= 2, deltas  # fragments as the upstream streamed them, not one buffered blob
    assert json.loads("".join(deltas)) == {"city": "Paris, France", "unit": "C"}
    (use,) = final.content
    assert use.type == "tool_use" and use.input == {"city": "Paris, France", "unit": "C"}
    assert final.stop_reason == "tool_use"


def test_native_passthrough_keeps_thinking_cache_control_and_headers(ac, sim):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "think first", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "earlier", "signature": "s0"},
                                              {"type": "text", "text": "ok"}]},
            {"role": "user", "content": "and now?"}]
    raw = ac.messages.with_raw_response.create(
        model="sonnet", max_tokens=64, messages=msgs, thinking={"type": "enabled", "budget_tokens": 1024},
        extra_body={"top_k": 5}, extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    m = raw.parse()
    assert [b.type for b in m.content] == ["thinking", "text"]
    assert m.content[0].signature == "sim-sig" and m.content[1].text == "echo: and now? [model=claude-sim]"
    assert raw.headers["x-tiergate-model"] == "sonnet"
    (req,) = sim.requests(model="claude-sim")
    assert req["path"] == "/v1/messages"
    assert req["body"]["messages"] == msgs  # no lossy round trip through the chat shape
    assert req["body"]["thinking"] == {"type": "enabled", "budget_tokens": 1024} and req["body"]["top_k"] == 5
    assert req["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert req["headers"]["anthropic-version"] and req["headers"]["x-api-key"] == "sk-sim-a"
    assert float(raw.headers["x-tiergate-cost-usd"]) == pytest.approx(
        (m.usage.input_tokens * 3 + m.usage.output_tokens * 15) / 1e6, abs=1e-9)


def test_native_stream_passes_events_through(ac, sim):
    with ac.messages.stream(model="sonnet", max_tokens=64, tools=TOOLS, thinking={"type": "enabled", "budget_tokens": 1024},
                            messages=[{"role": "user", "content": "weather in Oslo?"}]) as s:
        deltas = [ev.delta.type for ev in s if ev.type == "content_block_delta"]
        final = s.get_final_message()
    assert "thinking_delta" in deltas and "signature_delta" in deltas and deltas.count("input_json_delta") >= 2
    assert [b.type for b in final.content] == ["thinking", "tool_use"] and final.stop_reason == "tool_use"
    assert sim.requests(model="claude-sim")[0]["body"]["stream"] is True


def test_count_tokens(ac, sim):
    native = ac.messages.count_tokens(model="sonnet", messages=[{"role": "user", "content": "count these words"}])
    assert native.input_tokens > 0
    (req,) = sim.requests(path="/v1/messages/count_tokens")
    assert req["body"]["model"] == "claude-sim"
    estimate = ac.messages.count_tokens(model="fast", messages=[{"role": "user", "content": "count these words"}],
                                        tools=TOOLS)
    assert estimate.input_tokens > native.input_tokens  # the tools count too
    assert len(sim.requests(path="/v1/messages/count_tokens")) == 1  # an estimate calls no upstream
    # A cascade is counted where it starts (the policy's first step: tier 0 here, an estimate).
    assert ac.messages.count_tokens(model="cascade", messages=[{"role": "user", "content": "hi"}]).input_tokens > 0


def test_model_accepts_auto_tiers_aliases(ac):
    for model, tier in (("auto", None), ("tier:3", "3"), ("writer", "2")):
        raw = ac.messages.with_raw_response.create(model=model, max_tokens=32,
                                                   messages=[{"role": "user", "content": "hi"}])
        assert raw.parse().content[0].text.startswith("echo: hi")
        if tier:
            assert raw.headers["x-tiergate-tier"] == tier


@pytest.mark.parametrize(("kwargs", "status", "etype"), [
    ({"model": "no-such-model"}, 404, "not_found_error"),
    ({"model": "tier:9"}, 404, "not_found_error"),
    ({"max_tokens": 0}, 400, "invalid_request_error"),
    ({"messages": []}, 400, "invalid_request_error"),
    ({"messages": [{"role": "system", "content": "x"}]}, 400, "invalid_request_error"),
    ({"messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]}, 400, "invalid_request_error"),
])
def test_errors_are_anthropic_shaped(ac, kwargs, status, etype):
    args = {"model": "fast", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}], **kwargs}
    with pytest.raises(anthropic.APIStatusError) as ei:
        ac.messages.create(**args)
    assert ei.value.status_code == status
    assert ei.value.body["type"] == "error" and ei.value.body["error"]["type"] == etype
    assert ei.value.body["error"]["message"]


def test_upstream_failure_is_anthropic_shaped(ac, sim):
    sim.set_default("*", {"status": 500})  # every fallback fails too
    with pytest.raises(anthropic.InternalServerError) as ei:
        ac.messages.create(model="fast", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert ei.value.status_code in (502, 503) and ei.value.body["type"] == "error"


def test_mid_stream_failure_is_an_error_event(ac, sim):
    sim.script("fast-a", {"disconnect_after": 2, "content": "a b c d e f g"})
    with pytest.raises(anthropic.APIStatusError) as ei:
        with ac.messages.stream(model="fast", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
            for _ in s:
                pass
    assert "interrupted" in str(ei.value)


def test_x_api_key_authenticates(gateway_factory, monkeypatch):
    from tests.api.conftest import CATALOG

    monkeypatch.setenv("SIM_KEY_A", "sk-sim-a")
    url, _ = gateway_factory(CATALOG, master_key="sk-master-x")
    good = anthropic.Anthropic(base_url=url, api_key="sk-master-x", max_retries=0)  # sends x-api-key
    assert good.messages.create(model="fast", max_tokens=8, messages=[{"role": "user", "content": "a"}]).content
    bearer = anthropic.Anthropic(base_url=url, auth_token="sk-master-x", max_retries=0)  # Authorization: Bearer
    assert bearer.messages.create(model="fast", max_tokens=8, messages=[{"role": "user", "content": "a"}]).content
    with pytest.raises(anthropic.AuthenticationError) as ei:
        anthropic.Anthropic(base_url=url, api_key="wrong", max_retries=0).messages.create(
            model="fast", max_tokens=8, messages=[{"role": "user", "content": "a"}])
    assert ei.value.body["error"]["type"] == "authentication_error"


TOP_K = """
  - {name: openai-own, model: openai/gpt-own, tier: 3, api_key_env: SIM_KEY_A,
     input_cost_per_mtok: 2, output_cost_per_mtok: 8}
  - {name: strict, model: openai/strict-1, adapter: openai-compatible, tier: 1, api_base: "{sim}",
     drop_params: [top_k], input_cost_per_mtok: 1, output_cost_per_mtok: 1}
"""


def test_top_k_is_sent_only_where_the_endpoint_takes_it(gateway_factory, monkeypatch, sim):
    """Anthropic's top_k in a translated body: OpenAI's own API refuses it (400 "Unrecognized
    request argument"), so it is dropped there; other OpenAI-compatible servers take it."""
    from tests.api.conftest import CATALOG

    monkeypatch.setenv("SIM_KEY_A", "sk-sim-a")
    # 'openai-own' is OpenAI's own API to the gateway (no api_base); only litellm is sent to the simulator.
    monkeypatch.setenv("OPENAI_API_BASE", sim.openai_base)
    url, _ = gateway_factory(CATALOG.replace("aliases:", TOP_K.strip("\n") + "\naliases:", 1))
    ac = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)
    for model in ("openai-own", "strict", "fast"):
        m = ac.messages.create(model=model, max_tokens=16, extra_body={"top_k": 5, "temperature": 0.5},
                               messages=[{"role": "user", "content": "sample narrowly"}])
        assert m.content[0].text.startswith("echo: sample narrowly")
    sent = {r["model"]: r["body"] for r in sim.requests(path="/v1/chat/completions")}
    assert "top_k" not in sent["gpt-own"] and sent["gpt-own"]["temperature"] == 0.5
    assert "top_k" not in sent["strict-1"]  # declared: drop_params: [top_k]
    assert sent["fast-a"]["top_k"] == 5  # an OpenAI-compatible server that is not OpenAI's keeps it


def test_count_tokens_is_rate_limited_and_recorded_but_never_billed(gateway_factory, monkeypatch, sim):
    """count_tokens takes a slot of the key's RPM and leaves a usage record, like any call; it
    reserves no budget (a key whose budget fits no generation still counts), costs $0, and
    says who counted: Anthropic's own endpoint (a free upstream call) or the gateway's estimate."""
    from tests.api.conftest import CATALOG
    from tests.limits.test_e2e_http import fresh_window

    monkeypatch.setenv("SIM_KEY_A", "sk-sim-a")
    url, _ = gateway_factory(CATALOG, master_key="sk-master-ct")
    admin = httpx.Client(base_url=url, headers={"authorization": "Bearer sk-master-ct"}, timeout=10)
    made = admin.post("/v1/keys", json={"tenant": "ct", "rpm": 4, "daily_budget_usd": 0.000001}).json()
    ac = anthropic.Anthropic(base_url=url, api_key=made["key"], max_retries=0)
    msgs = [{"role": "user", "content": "count these words"}]
    fresh_window()
    native = ac.messages.with_raw_response.count_tokens(model="sonnet", messages=msgs)
    assert native.parse().input_tokens > 0
    assert native.headers["x-ratelimit-remaining-requests"] == "3" and native.headers["x-tiergate-model"] == "sonnet"
    assert "counted by sonnet" in native.headers["x-tiergate-route-reason"]
    assert float(native.headers["x-tiergate-cost-usd"]) == 0
    estimate = ac.messages.with_raw_response.count_tokens(model="fast", messages=msgs)
    assert estimate.parse().input_tokens > 0 and estimate.headers["x-ratelimit-remaining-requests"] == "2"
    assert "estimated by the gateway" in estimate.headers["x-tiergate-route-reason"]
    with pytest.raises(anthropic.RateLimitError) as ei:  # a generation needs budget: refused
        ac.messages.create(model="fast", max_tokens=64, messages=msgs)
    assert "budget" in ei.value.message
    for model in ("sonnet", "fast"):
        ac.messages.count_tokens(model=model, messages=msgs)
    with pytest.raises(anthropic.RateLimitError) as ei:  # the 5th call in the minute
        ac.messages.count_tokens(model="sonnet", messages=msgs)
    assert ei.value.body["type"] == "error" and ei.value.body["error"]["type"] == "rate_limit_error"
    assert ei.value.response.headers.get("retry-after")
    assert len(sim.requests(path="/v1/messages/count_tokens")) == 2  # the refused one never went upstream
    assert sim.requests(path="/v1/chat/completions") == []

    recs = admin.get("/v1/usage", params={"key_id": made["id"], "period": "day"}).json()["data"]
    assert [(r["model"], r["operation"], r["outcome"], r["cost_usd"], r["prompt_tokens"]) for r in recs] == [
        (m, "count_tokens", "ok", 0, 0) for m in ("sonnet", "fast", "sonnet", "fast")]
    assert [r["attempts"] for r in recs] == [1, 0, 1, 0]  # Anthropic counted; the gateway estimated
    day = next(s for s in admin.get("/v1/budget", params={"key_id": made["id"]}).json()["scopes"]
               if s["scope"] == "key" and s["period"] == "day")
    assert day["spent_usd"] == 0 and day["reserved_usd"] == 0
