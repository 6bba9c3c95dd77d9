"""The agent over real HTTP with the openai SDK, on the tiny GGUF, no cloud configured."""

from __future__ import annotations

import httpx
import openai
import pytest

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def agent(edge_agent):
    return edge_agent()


def test_chat_completion_is_answered_locally_with_the_reason(agent) -> None:
    client = openai.OpenAI(base_url=agent.base_url, api_key="unused")
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=MSG, max_tokens=6, temperature=0)
    r = raw.parse()
    assert raw.headers["x-tiergate-model"] == "local" and raw.headers["x-tiergate-tier"] == "0"
    assert "offload: stay local" in raw.headers["x-tiergate-route-reason"]
    assert r.usage is not None and r.usage.completion_tokens >= 6 and r.choices[0].finish_reason == "length"


def test_streaming_through_the_agent(agent) -> None:
    client = openai.OpenAI(base_url=agent.base_url, api_key="unused")
    full = client.chat.completions.create(model="local", messages=MSG, max_tokens=10, temperature=0)
    stream = client.chat.completions.create(model="local", messages=MSG, max_tokens=10, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_no_cloud_and_local_cannot_serve_is_a_clear_400(agent) -> None:
    # A capability nothing here has is the request's problem: 400 naming it (was a retryable 503).
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    r = httpx.post(agent.base_url + "/chat/completions", timeout=30, json={"model": "auto", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what is it?"}, image]}]})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "capability_not_supported" and "vision" in err["message"]
    assert err["tiergate"]["missing"] == ["vision"]


def test_local_tool_call_without_a_cloud(agent) -> None:
    r = httpx.post(agent.base_url + "/chat/completions", timeout=30, json={
        "model": "auto", "messages": MSG, "tools": TOOLS, "tool_choice": "required", "max_tokens": 400,
        "temperature": 0})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "f"


def test_bad_override_header_is_a_400(agent) -> None:
    r = httpx.post(agent.base_url + "/chat/completions", json={"model": "auto", "messages": MSG},
                   headers={"x-tiergate-offload": "sideways"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "x-tiergate-offload"


def test_prompt_too_long_for_local_only_is_a_400(agent) -> None:
    long = [{"role": "user", "content": "the quick brown fox " * 2000}]
    r = httpx.post(agent.base_url + "/chat/completions", json={"model": "local", "messages": long}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_health_reports_local_model_and_cloud(agent) -> None:
    client = openai.OpenAI(base_url=agent.base_url, api_key="unused")
    client.chat.completions.create(model="auto", messages=MSG, max_tokens=2)
    h = httpx.get(agent.url + "/health", timeout=10).json()["edge"]
    assert h["local_model"]["loaded"] is True and h["local_model"]["context_window"] == 2048
    assert h["cloud"] == {**h["cloud"], "configured": False, "state": "down"}
    assert h["usage_outbox_pending"] >= 1       # the local answer's usage waits for a cloud


def test_unknown_job_is_404(agent) -> None:
    r = httpx.get(agent.base_url + "/jobs/job_nope", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def _tokens(agent) -> int:
    return agent.agent.runtime.tokens_generated


def test_a_client_that_drops_a_non_streamed_request_stops_local_generation(agent) -> None:
    """A non-streamed local answer whose client hangs up stops within a token of the server
    seeing the disconnect, so the next request does not wait behind the dead one (it would
    hold the model for ~1,500 tokens, several seconds on the tiny GGUF)."""
    import json
    import socket
    import time

    no_end = {"2": -100, "4": -100}  # no </s>, no <|im_end|>: it would run to max_tokens
    body = json.dumps({"model": "local", "max_tokens": 1500, "temperature": 0, "logit_bias": no_end,
                       "messages": MSG}).encode()
    host, port = agent.url.removeprefix("http://").split(":")
    before = _tokens(agent)
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 + f"content-length: {len(body)}\r\n\r\n".encode() + body)
    deadline = time.monotonic() + 30
    while _tokens(agent) < before + 5 and time.monotonic() < deadline:
        time.sleep(0.002)
    sock.close()                         # the client gives up before any answer
    at_close = _tokens(agent)
    settled = at_close
    while True:                          # until generation has stopped
        time.sleep(0.2)
        now = _tokens(agent)
        if now == settled:
            break
        settled = now
    # It stopped at once (the tiny GGUF makes ~200 tokens/s: 30 tokens is 0.15 s of slack for
    # the disconnect to travel from the socket to the model), never near max_tokens.
    assert settled - at_close < 30, (before, at_close, settled)
    assert settled - before < 200
    # The model is free: the next request is answered at once (not after the dead one's 1,500 tokens).
    client = openai.OpenAI(base_url=agent.base_url, api_key="unused", max_retries=0, timeout=10)
    r = client.chat.completions.create(model="local", messages=MSG, max_tokens=4, temperature=0)
    assert r.usage.completion_tokens == 4
    assert _tokens(agent) == settled + 4
