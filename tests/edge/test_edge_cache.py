"""The response cache on the edge agent (real llama.cpp on the tiny GGUF): exact and
semantic hits are answered without the local model, recorded for the usage sync."""

from __future__ import annotations

import openai


def test_the_agent_answers_repeats_and_paraphrases_from_its_cache(edge_agent) -> None:
    agent = edge_agent(cache="semantic", cache_threshold=0.85)
    c = openai.OpenAI(base_url=agent.base_url, api_key="unused", max_retries=0)
    ask = lambda text: c.chat.completions.with_raw_response.create(  # noqa: E731
        model="local", messages=[{"role": "user", "content": text}], max_tokens=6, temperature=0)
    first = ask("What is the capital of France?")
    assert first.headers["x-tiergate-cache"] == "stored" and first.headers["x-tiergate-model"] == "local"
    again = ask("What is the capital of France?")
    assert again.headers["x-tiergate-cache"] == "hit"
    para = ask("Could you tell me the capital of France, please?")
    assert para.headers["x-tiergate-cache"] == "semantic-hit"
    assert para.parse().choices[0].message.content == first.parse().choices[0].message.content
    near = ask("What is the capital of Germany?")
    assert near.headers["x-tiergate-cache"] == "stored"
    # Hits are in the usage outbox the agent syncs to the cloud, marked as hits.
    recs = agent.agent.outbox.batch(100)
    assert sorted((r["cache_hit"], r["outcome"]) for r in recs) == [
        (False, "ok"), (False, "ok"), (True, "cache_hit"), (True, "cache_hit")]


def test_the_cache_is_off_on_the_agent_unless_asked(edge_agent) -> None:
    agent = edge_agent()
    c = openai.OpenAI(base_url=agent.base_url, api_key="unused", max_retries=0)
    r = c.chat.completions.with_raw_response.create(model="local", messages=[{"role": "user", "content": "hi"}],
                                                    max_tokens=4, temperature=0)
    assert "x-tiergate-cache" not in r.headers
