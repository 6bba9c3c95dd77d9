"""Chat completions through the official openai SDK over real HTTP: content, usage,
cost, headers, sync/async/streaming, tools, JSON mode."""

from __future__ import annotations

import json

import openai
import pytest


def test_sync_completion_reports_model_tier_cost_and_usage(client, sim):
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": "hello there"}])
    r = raw.parse()
    assert r.choices[0].message.content == "echo: hello there [model=fast-a]"
    assert raw.headers["x-tiergate-model"] == "fast"
    assert raw.headers["x-tiergate-tier"] == "1"
    assert raw.headers["x-tiergate-attempts"] == "1"
    assert "fast requested" in raw.headers["x-tiergate-route-reason"]
    usage = r.usage
    expected = (usage.prompt_tokens * 0.15 + usage.completion_tokens * 0.60) / 1e6
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.model_extra["cost_usd"] == pytest.approx(expected)
    assert float(raw.headers["x-tiergate-cost-usd"]) == pytest.approx(expected, abs=1e-9)
    # The provider key from the catalog's api_key_env went upstream as a bearer token.
    (req,) = sim.requests(model="fast-a")
    assert req["headers"]["authorization"] == "Bearer sk-sim-a"
    assert req["body"]["model"] == "fast-a"


async def test_async_client(gw, sim):
    c = openai.AsyncOpenAI(base_url=gw[0] + "/v1", api_key="x", max_retries=0)
    r = await c.chat.completions.create(model="premium", messages=[{"role": "user", "content": "async hi"}],
                                        temperature=0.2, max_tokens=50, stop=["\n\n"])
    assert r.choices[0].message.content == "echo: async hi [model=premium-3]"
    body = sim.requests(model="premium-3")[0]["body"]
    assert body["temperature"] == 0.2 and body["max_tokens"] == 50 and body["stop"] == ["\n\n"]
    await c.close()


def test_stream_with_usage_chunk(client, sim):
    stream = client.chat.completions.create(model="fast-b", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "one two three four"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three four [model=fast-b]"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.model_extra["cost_usd"] == pytest.approx(
        (last.usage.prompt_tokens * 0.20 + last.usage.completion_tokens * 0.80) / 1e6)


def test_stream_without_include_usage_sends_no_usage(client):
    chunks = list(client.chat.completions.create(model="fast-b", stream=True,
                                                 messages=[{"role": "user", "content": "a b"}]))
    assert chunks and all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_async_stream(gw):
    c = openai.AsyncOpenAI(base_url=gw[0] + "/v1", api_key="x", max_retries=0)
    parts = []
    async for chunk in await c.chat.completions.create(model="fast", stream=True,
                                                       messages=[{"role": "user", "content": "stream me"}]):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    assert "".join(parts) == "echo: stream me [model=fast-a]"
    await c.close()


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_tool_call_round_trip(client, sim):
    msgs = [{"role": "user", "content": "weather in Paris?"}]
    r = client.chat.completions.create(model="fast", messages=msgs, tools=TOOLS, tool_choice="auto")
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)
    msgs += [r.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]
    r2 = client.chat.completions.create(model="fast", messages=msgs, tools=TOOLS)
    assert r2.choices[0].message.content.startswith("tool said: sunny, 21C")
    sent = sim.requests(model="fast-a")[0]["body"]
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "auto"


def test_tools_skip_models_without_the_capability(client):
    # cheap-coder (tier 0) has no 'tools': a coding request with tools goes to tier 1.
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "implement a python function"}], tools=TOOLS)
    assert raw.headers["x-tiergate-tier"] == "1"
    assert "tier 0 had no usable deployment" in raw.headers["x-tiergate-route-reason"]


def test_json_mode(client):
    r = client.chat.completions.create(model="fast", response_format={"type": "json_object"},
                                       messages=[{"role": "user", "content": "give json"}])
    assert json.loads(r.choices[0].message.content)["echo"] == "give json"


def test_litellm_adapter_reaches_anthropic_wire_format(client, sim):
    raw = client.chat.completions.with_raw_response.create(
        model="writer", messages=[{"role": "user", "content": "via litellm"}], max_tokens=64)
    r = raw.parse()
    assert r.choices[0].message.content == "echo: via litellm [model=claude-sim]"
    assert raw.headers["x-tiergate-model"] == "sonnet" and raw.headers["x-tiergate-tier"] == "2"
    (req,) = sim.requests(model="claude-sim")
    assert req["path"] == "/v1/messages" and req["headers"]["x-api-key"] == "sk-sim-a"
    assert r.usage.model_extra["cost_usd"] == pytest.approx(
        (r.usage.prompt_tokens * 3 + r.usage.completion_tokens * 15) / 1e6)


def test_litellm_adapter_streams(client):
    chunks = list(client.chat.completions.create(model="sonnet", stream=True, max_tokens=64,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "stream via litellm"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream via litellm [model=claude-sim]"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
