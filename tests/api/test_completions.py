"""The legacy ``/v1/completions`` door through the official ``openai`` SDK over real HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest


def test_completion(client, sim):
    raw = client.completions.with_raw_response.create(model="fast", prompt="say hi", max_tokens=20, temperature=0)
    c = raw.parse()
    assert c.object == "text_completion" and c.choices[0].text == "echo: say hi [model=fast-a]"
    assert c.choices[0].finish_reason == "stop" and c.usage.total_tokens > 0
    assert raw.headers["x-tiergate-model"] == "fast"
    body = sim.requests(model="fast-a")[0]["body"]
    assert body["messages"] == [{"role": "user", "content": "say hi"}] and body["max_tokens"] == 20


def test_default_max_tokens_and_echo(client, sim):
    c = client.completions.create(model="fast", prompt="Q: ", echo=True)
    assert c.choices[0].text.startswith("Q: echo:")
    assert sim.requests(model="fast-a")[0]["body"]["max_tokens"] == 16  # OpenAI's documented default


def test_stream(client):
    chunks = list(client.completions.create(model="fast-b", prompt="one two three", max_tokens=30, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert text == "echo: one two three [model=fast-b]"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert all(ch.object == "text_completion" for ch in chunks)


@pytest.mark.parametrize("body", [{"model": "fast"}, {"model": "fast", "prompt": ["a", "b"]},
                                  {"model": "fast", "prompt": "x", "n": 2}, {"model": "fast", "prompt": "x", "best_of": 3},
                                  {"model": "fast", "prompt": "x", "suffix": "y"}, {"model": "fast", "prompt": [1, 2]}])
def test_malformed_bodies_are_400s(gw, body):
    r = httpx.post(gw[0] + "/v1/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x")
