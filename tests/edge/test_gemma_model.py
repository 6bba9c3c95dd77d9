"""The real bundled model (Gemma 3 270M Q4_K_M) through the HTTP API with the openai SDK."""

from __future__ import annotations

import openai
import pytest


@pytest.mark.gemma
def test_gemma_answers_and_streams(edge_agent, tmp_path) -> None:
    agent = edge_agent(model="bundled:gemma3-270m", n_ctx_cap=1024)
    client = openai.OpenAI(base_url=agent.base_url, api_key="unused")
    msg = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=msg, max_tokens=16, temperature=0)
    r = raw.parse()
    assert raw.headers["x-tiergate-model"] == "local"
    assert r.choices[0].message.content and r.usage.completion_tokens > 0
    h = agent.agent.health_info()["edge"]["local_model"]
    assert h["chat_format"] == "gemma" and h["path"].endswith("gemma-3-270m-q4_k_m.gguf")
    chunks = list(client.chat.completions.create(model="auto", messages=msg, max_tokens=16, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
