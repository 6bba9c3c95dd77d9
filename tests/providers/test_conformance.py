"""One conformance suite, run against every adapter and wire format through the simulator."""

from __future__ import annotations

import email.utils
import json
import socket
import time

import pytest

from tests.providers.conftest import CASES, Case, call_for
from tests.support.upstream import UpstreamSim, default_content, estimate_tokens, split_chunks
from tiergate import errors
from tiergate.providers.base import Provider, ProviderCall

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                       "required": ["city"]},
    },
}


async def collect(provider: Provider, call: ProviderCall) -> list[dict]:
    return [c async for c in provider.stream(call)]


def text_of(chunks: list[dict]) -> str:
    return "".join((ch.get("delta") or {}).get("content") or "" for c in chunks for ch in c.get("choices") or [])


def wire_name(dep) -> str:
    return dep.model.split("/", 1)[1]


def auth_of(case: Case, entry: dict) -> str | None:
    h = entry["headers"]
    return h.get("x-api-key") if case.wire == "anthropic" else h.get("authorization")


# --- happy paths -----------------------------------------------------------------------


async def test_complete_returns_the_upstream_answer(case: Case, provider: Provider, sim: UpstreamSim):
    dep = case.deployment(sim)
    out = await provider.complete(call_for(dep, "what is  two plus two"))
    wire = wire_name(dep)
    expected = default_content(wire, "what is two plus two")
    assert out["choices"][0]["message"]["content"] == expected
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] == estimate_tokens(expected)
    assert out["usage"]["prompt_tokens"] >= estimate_tokens("what is two plus two")
    [req] = sim.requests()
    assert req["path"] == case.path
    assert req["body"]["model"] == wire
    assert not req["body"].get("stream")
    assert auth_of(case, req) in ("Bearer sk-test", "sk-test")


async def test_stream_yields_chunks_in_order_with_usage_last(case: Case, provider: Provider, sim: UpstreamSim):
    dep = case.deployment(sim)
    wire = wire_name(dep)
    text = "one two three four five six seven"
    chunks = await collect(provider, call_for(dep, text))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert text_of(chunks) == default_content(wire, text)
    # one chunk per word from the simulator: the adapter forwards them, it does not merge them
    assert sum(1 for c in chunks if any((ch.get("delta") or {}).get("content") for ch in c["choices"])) == len(
        split_chunks(default_content(wire, text), None))
    finishes = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch.get("finish_reason")]
    assert finishes == ["stop"]
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == estimate_tokens(default_content(wire, text))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert all(not c.get("usage") for c in chunks[:-1])
    [req] = sim.requests()
    assert req["body"]["stream"] is True
    if case.wire == "openai":
        assert req["body"]["stream_options"] == {"include_usage": True}


async def test_chunks_are_delivered_as_they_arrive(case: Case, provider: Provider, sim: UpstreamSim):
    """The upstream sends 3 chunks then stalls: a buffering adapter would deliver none of them."""
    dep = case.deployment(sim)
    sim.script(wire_name(dep), [{"stall_after": 3}])
    got: list[dict] = []
    with pytest.raises(errors.StreamInterrupted) as ei:
        async for c in provider.stream(call_for(dep, "a b c d e f", timeout_s=1.0)):
            got.append(c)
    assert text_of(got) == "echo: a b "
    assert ei.value.details["deployment"] == dep.deployment_id


async def test_tool_call_round_trip(case: Case, provider: Provider, sim: UpstreamSim):
    dep = case.deployment(sim)
    messages = [{"role": "user", "content": "Paris"}]
    first = await provider.complete(call_for(dep, "Paris", tools=[WEATHER_TOOL], tool_choice="auto"))
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [tc] = choice["message"]["tool_calls"]
    assert tc["function"]["name"] == "get_weather"
    assert json.loads(tc["function"]["arguments"]) == {"city": "Paris", "days": 1}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": tc["id"], "type": "function", "function": tc["function"]}]},
        {"role": "tool", "tool_call_id": tc["id"], "content": "sunny, 21C"},
    ]
    second = await provider.complete(ProviderCall(deployment=dep, body={"messages": messages, "tools": [WEATHER_TOOL]},
                                                  timeout_s=5, api_key="k"))
    assert second["choices"][0]["message"]["content"] == f"tool said: sunny, 21C [model={wire_name(dep)}]"
    assert second["choices"][0]["finish_reason"] == "stop"
    sent = sim.requests()[-1]["body"]["messages"]
    if case.wire == "anthropic":  # LiteLLM turned the tool message into a tool_result block
        blocks = sent[-1]["content"]
        assert sent[-1]["role"] == "user" and blocks[0]["type"] == "tool_result"
    else:
        assert sent[-1] == messages[-1]


async def test_forced_tool_call_streams_its_arguments(case: Case, provider: Provider, sim: UpstreamSim):
    dep = case.deployment(sim)
    forced = {"type": "function", "function": {"name": "get_weather"}}
    chunks = await collect(provider, call_for(dep, "Kyoto", tools=[WEATHER_TOOL], tool_choice=forced))
    args, names = "", []
    for c in chunks:
        for ch in c["choices"]:
            for tc in (ch.get("delta") or {}).get("tool_calls") or []:
                fn = tc.get("function") or {}
                if fn.get("name"):
                    names.append(fn["name"])
                args += fn.get("arguments") or ""
    assert names == ["get_weather"]
    assert json.loads(args) == {"city": "Kyoto", "days": 1}
    assert [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch.get("finish_reason")] == ["tool_calls"]


OPENAI_WIRE = [c for c in CASES if c.wire == "openai"]


@pytest.mark.parametrize("case", OPENAI_WIRE, ids=[c.id for c in OPENAI_WIRE])
async def test_json_object_mode_returns_valid_json(case: Case, provider: Provider, sim: UpstreamSim):
    """(Anthropic has no json_object mode; LiteLLM drops it there. json_schema below covers it.)"""
    dep = case.deployment(sim)
    out = await provider.complete(call_for(dep, "give me json", response_format={"type": "json_object"}))
    data = json.loads(out["choices"][0]["message"]["content"])
    assert data == {"echo": "give me json", "model": wire_name(dep)}
    assert sim.requests()[0]["body"]["response_format"] == {"type": "json_object"}


async def test_json_schema_mode_returns_matching_json(case: Case, provider: Provider, sim: UpstreamSim):
    dep = case.deployment(sim)
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
              "required": ["answer", "score"]}
    rf = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}}
    out = await provider.complete(call_for(dep, "rate this", response_format=rf))
    assert json.loads(out["choices"][0]["message"]["content"]) == {"answer": "rate this", "score": 1}


async def test_parameters_and_extra_headers_reach_the_upstream(case: Case, provider: Provider, sim: UpstreamSim):
    dep = case.deployment(sim, extra_headers={"x-team": "blue"})
    call = ProviderCall(deployment=dep, body={"messages": [{"role": "user", "content": "hi"}], "temperature": 0.25,
                                              "max_tokens": 33, "stop": ["END"]},
                        timeout_s=5, api_key="sk-x", extra_headers={"x-request-id": "r-1"})
    await provider.complete(call)
    [req] = sim.requests()
    assert req["headers"]["x-team"] == "blue"
    assert req["headers"]["x-request-id"] == "r-1"
    assert req["body"]["temperature"] == 0.25
    assert req["body"]["max_tokens"] == 33
    assert req["body"].get("stop", req["body"].get("stop_sequences")) == ["END"]


# --- failures --------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["3", "date"])
async def test_429_becomes_rate_limited_with_retry_after(case: Case, provider: Provider, sim: UpstreamSim,
                                                         retry_after: str):
    dep = case.deployment(sim)
    value = email.utils.formatdate(time.time() + 30, usegmt=True) if retry_after == "date" else retry_after
    sim.script(wire_name(dep), [{"status": 429, "retry_after": value}])
    with pytest.raises(errors.UpstreamRateLimited) as ei:
        await provider.complete(call_for(dep))
    if retry_after == "date":
        assert 25 <= ei.value.retry_after <= 31
    else:
        assert ei.value.retry_after == 3.0
    assert ei.value.details["deployment"] == dep.deployment_id
    assert len(sim.requests()) == 1  # the adapter never retries on its own


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_becomes_server_error_without_hidden_retries(case: Case, provider: Provider, sim: UpstreamSim,
                                                               status: int):
    dep = case.deployment(sim)
    sim.script(wire_name(dep), [{"status": status}])
    with pytest.raises(errors.UpstreamServerError) as ei:
        await provider.complete(call_for(dep))
    assert ei.value.details["deployment"] == dep.deployment_id
    assert ei.value.retryable and ei.value.counts_against_deployment
    assert len(sim.requests()) == 1


async def test_400_becomes_bad_request_with_the_upstream_message(case: Case, provider: Provider, sim: UpstreamSim):
    dep = case.deployment(sim)
    sim.script(wire_name(dep), [{"status": 400, "error_message": "messages.0: unknown field 'foo'"}])
    with pytest.raises(errors.UpstreamBadRequest) as ei:
        await provider.complete(call_for(dep))
    assert "unknown field 'foo'" in ei.value.message
    assert not ei.value.retryable
    assert ei.value.details["deployment"] == dep.deployment_id


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failures(case: Case, provider: Provider, sim: UpstreamSim, status: int):
    dep = case.deployment(sim)
    sim.script(wire_name(dep), [{"status": status}])
    with pytest.raises(errors.UpstreamAuthFailed) as ei:
        await provider.complete(call_for(dep))
    assert ei.value.details["deployment"] == dep.deployment_id


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_hang_becomes_timeout_within_the_timeout(case: Case, provider: Provider, sim: UpstreamSim, mode: str):
    dep = case.deployment(sim)
    sim.script(wire_name(dep), [{"hang": True}])
    started = time.monotonic()
    with pytest.raises(errors.UpstreamTimeout) as ei:
        if mode == "complete":
            await provider.complete(call_for(dep, timeout_s=0.5))
        else:
            await collect(provider, call_for(dep, timeout_s=0.5))
    assert time.monotonic() - started < 2.5  # bounded by the attempt timeout, not the upstream
    assert ei.value.details["deployment"] == dep.deployment_id


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_closed_port_becomes_unavailable(case: Case, provider: Provider, sim: UpstreamSim, mode: str):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}" + ("/v1" if case.wire == "openai" else "")
    dep = case.deployment(sim, api_base=base)
    with pytest.raises(errors.UpstreamUnavailable) as ei:
        if mode == "complete":
            await provider.complete(call_for(dep))
        else:
            await collect(provider, call_for(dep))
    assert ei.value.details["deployment"] == dep.deployment_id
    assert sim.requests() == []


async def test_disconnect_mid_stream_is_interrupted_after_chunks(case: Case, provider: Provider, sim: UpstreamSim):
    dep = case.deployment(sim)
    sim.script(wire_name(dep), [{"disconnect_after": 3}])
    got: list[dict] = []
    with pytest.raises(errors.StreamInterrupted) as ei:
        async for c in provider.stream(call_for(dep, "alpha beta gamma delta epsilon")):
            got.append(c)
    assert text_of(got) == "echo: alpha beta "
    assert ei.value.details["deployment"] == dep.deployment_id
    assert not ei.value.retryable


@pytest.mark.parametrize("step", [{"status": 500}, {"status": 429, "retry_after": 1}, {"drop": True}])
async def test_stream_failing_before_the_first_chunk_is_not_interrupted(case: Case, provider: Provider,
                                                                        sim: UpstreamSim, step: dict):
    """Failures before any chunk raise the ordinary (fallback-able) error from the first __anext__."""
    dep = case.deployment(sim)
    sim.script(wire_name(dep), [step])
    stream = provider.stream(call_for(dep))
    with pytest.raises(errors.UpstreamError) as ei:
        await stream.__anext__()
    assert not isinstance(ei.value, errors.StreamInterrupted)
    assert ei.value.retryable
    assert ei.value.details["deployment"] == dep.deployment_id


async def test_slow_upstream_within_the_timeout_succeeds(case: Case, provider: Provider, sim: UpstreamSim):
    dep = case.deployment(sim)
    sim.script(wire_name(dep), [{"delay_ms": 200, "chunk_delay_ms": 50}])
    chunks = await collect(provider, call_for(dep, "slow but fine", timeout_s=2.0))
    assert text_of(chunks) == default_content(wire_name(dep), "slow but fine")
