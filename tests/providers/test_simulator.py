"""Self-tests of the upstream simulator: the wire formats and the control API other suites rely on."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.upstream import UpstreamSim, default_content, estimate_tokens, split_chunks
from tiergate.providers.sse import SSEDecoder


def sse_events(body: bytes) -> list[tuple[str | None, dict | str]]:
    out = []
    for event, data in SSEDecoder().feed(body):
        out.append((event, data.decode() if data == b"[DONE]" else json.loads(data)))
    return out


@pytest.fixture
def http(sim: UpstreamSim):
    with httpx.Client(base_url=sim.url, timeout=5) as c:
        yield c


def test_anthropic_stream_is_the_real_event_sequence(sim: UpstreamSim, http: httpx.Client):
    r = http.post("/v1/messages", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                  json={"model": "claude-sim", "max_tokens": 50, "stream": True,
                        "messages": [{"role": "user", "content": "hi you"}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.content)
    names = [e for e, _ in events]
    n_deltas = len(split_chunks(default_content("claude-sim", "hi you"), None))
    assert n_deltas == 4
    assert names == ["message_start", "content_block_start", "ping", *["content_block_delta"] * n_deltas,
                     "content_block_stop", "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)  # event name matches the data's type
    start = events[0][1]["message"]
    assert start["role"] == "assistant" and start["content"] == [] and start["usage"]["input_tokens"] > 0
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == default_content("claude-sim", "hi you")
    assert all(d["delta"]["type"] == "text_delta" for n, d in events if n == "content_block_delta")
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == estimate_tokens(text)
    assert sim.requests()[0]["headers"]["x-api-key"] == "k"


def test_anthropic_tool_use_stream_and_json(sim: UpstreamSim, http: httpx.Client):
    tools = [{"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    body = {"model": "c", "max_tokens": 50, "tools": tools, "tool_choice": {"type": "tool", "name": "lookup"},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "find cats"}]}]}
    r = http.post("/v1/messages", json=body)
    msg = r.json()
    assert msg["stop_reason"] == "tool_use"
    [block] = msg["content"]
    assert block["type"] == "tool_use" and block["name"] == "lookup" and block["input"] == {"q": "find cats"}
    events = sse_events(http.post("/v1/messages", json={**body, "stream": True}).content)
    [start] = [d for n, d in events if n == "content_block_start"]
    assert start["content_block"]["type"] == "tool_use"
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert json.loads(partial) == {"q": "find cats"}
    assert [d for n, d in events if n == "message_delta"][0]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_error_shape_and_tool_result_answer(sim: UpstreamSim, http: httpx.Client):
    sim.script("c", [{"status": 529, "error_message": "busy"}])
    r = http.post("/v1/messages", json={"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 529
    assert r.json() == {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    msgs = [{"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"}]}]
    r = http.post("/v1/messages", json={"model": "c", "max_tokens": 5, "messages": msgs})
    assert r.json()["content"][0]["text"] == "tool said: 42 [model=c]"


def test_openai_stream_shape_and_usage_chunk(sim: UpstreamSim, http: httpx.Client):
    body = {"model": "gpt-sim", "stream": True, "messages": [{"role": "user", "content": "a b"}]}
    plain = sse_events(http.post("/v1/chat/completions", json=body).content)
    assert plain[-1] == (None, "[DONE]")
    assert all(not isinstance(d, dict) or "usage" not in d for _, d in plain)
    events = sse_events(http.post("/v1/chat/completions",
                                  json={**body, "stream_options": {"include_usage": True}}).content)
    usage_chunk = events[-2][1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] > 0
    assert events[0][1]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-3][1]["choices"][0]["finish_reason"] == "stop"


def test_script_fifo_count_wildcard_default_and_reset(sim: UpstreamSim, http: httpx.Client):
    def status(model: str) -> int:
        return http.post("/v1/chat/completions",
                         json={"model": model, "messages": [{"role": "user", "content": "q"}]}).status_code

    sim.script("m", [{"status": 500, "count": 2}, {"status": 503}])
    sim.script("*", [{"status": 429}])
    sim.set_default("m", {"status": 502})
    assert [status("m") for _ in range(5)] == [500, 500, 503, 429, 502]
    assert status("other") == 200
    sim.set_default("m", None)
    assert status("m") == 200
    log = sim.requests(model="m")
    assert [e["step"]["status"] if e["step"] else None for e in log] == [500, 500, 503, 429, 502, None]
    assert [e["seq"] for e in sim.requests()] == sorted(e["seq"] for e in sim.requests())
    sim.script("m", [{"status": 500}])
    sim.reset()
    assert sim.requests() == [] and status("m") == 200


def test_builtin_models(sim: UpstreamSim, http: httpx.Client):
    r = http.post("/v1/chat/completions", json={"model": "always-429", "messages": [{"role": "user", "content": "q"}]})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "rate_limit_error"
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/v1/chat/completions", json={"model": "always-drop", "messages": [{"role": "user", "content": "q"}]})
    with pytest.raises(httpx.ReadTimeout):
        http.post("/v1/chat/completions", json={"model": "always-hang", "messages": []}, timeout=0.3)


def test_models_listing_and_bad_json(sim: UpstreamSim, http: httpx.Client):
    http.post("/v1/chat/completions", json={"model": "seen-model", "messages": [{"role": "user", "content": "q"}]})
    ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert "seen-model" in ids
    r = http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_disconnect_mid_stream_sends_exactly_n_chunks(sim: UpstreamSim, http: httpx.Client):
    sim.script("m", [{"disconnect_after": 2, "chunks": 6}])
    got = []
    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream("POST", "/v1/chat/completions",
                         json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "q"}]}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    got.append(line)
    assert len(got) == 2


def test_custom_content_tool_calls_usage_and_headers(sim: UpstreamSim, http: httpx.Client):
    sim.script("m", [{"content": "fixed", "finish_reason": "length", "usage": {"prompt_tokens": 7,
                                                                              "completion_tokens": 3},
                      "headers": {"x-sim": "yes"}},
                     {"tool_calls": [{"name": "f", "arguments": {"a": 1}, "id": "call_1"}]}])
    r = http.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "q"}]})
    out = r.json()
    assert r.headers["x-sim"] == "yes"
    assert out["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": "fixed"},
                                 "logprobs": None, "finish_reason": "length"}
    assert out["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    out = http.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "q"}]}).json()
    assert out["choices"][0]["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
