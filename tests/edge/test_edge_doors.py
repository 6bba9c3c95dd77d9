"""The front doors on the edge agent: Anthropic Messages, Responses and embeddings answered
on the device (tiny GGUF, the packaged embedder), and offloaded to the real cloud gateway
through the same doors (Messages natively, embeddings by the cloud's model)."""

from __future__ import annotations

import anthropic
import openai

TOOLS = [{"name": "lookup", "description": "look it up", "input_schema": {"type": "object", "properties": {}}}]


def test_doors_answer_locally(edge_agent, sim):
    agent = edge_agent()
    ac = anthropic.Anthropic(base_url=agent.url, api_key="unused", max_retries=0)
    raw = ac.messages.with_raw_response.create(model="auto", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    m = raw.parse()
    assert raw.headers["x-tiergate-model"] == "local" and m.type == "message" and m.usage.output_tokens > 0
    with ac.messages.stream(model="local", max_tokens=4, messages=[{"role": "user", "content": "hi"}]) as s:
        kinds = [ev.type for ev in s]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    oc = openai.OpenAI(base_url=agent.base_url, api_key="unused", max_retries=0)
    r1 = oc.responses.create(model="auto", input="hello", max_output_tokens=4)
    r2 = oc.responses.create(model="auto", input="again", max_output_tokens=4, previous_response_id=r1.id)
    assert r2.previous_response_id == r1.id and oc.responses.retrieve(r2.id).id == r2.id
    e = oc.embeddings.with_raw_response.create(model="auto", input=["on the device"], encoding_format="float")
    assert e.headers["x-tiergate-model"] == "local-embed" and len(e.parse().data[0].embedding) == 256
    assert sim.requests() == []  # nothing left the device


def test_doors_offload_to_the_cloud(edge_agent, cloud, sim):
    agent = edge_agent(cloud.url)
    ac = anthropic.Anthropic(base_url=agent.url, api_key="unused", max_retries=0)
    # The local model can call tools too: the override sends this one up.
    raw = ac.messages.with_raw_response.create(model="auto", max_tokens=32, tools=TOOLS,
                                               messages=[{"role": "user", "content": "use the lookup tool"}],
                                               extra_headers={"x-tiergate-offload": "cloud"})
    assert raw.headers["x-tiergate-model"] == "cloud" and "override cloud" in raw.headers["x-tiergate-route-reason"]
    assert [b.type for b in raw.parse().content] == ["tool_use"]
    (up,) = sim.requests()
    assert up["body"]["tools"][0]["function"]["name"] == "lookup"  # the cloud translated for its upstream
    oc = openai.OpenAI(base_url=agent.base_url, api_key="unused", max_retries=0)
    e = oc.embeddings.with_raw_response.create(model="sim-embed", input="up there", encoding_format="float")
    assert e.headers["x-tiergate-model"] == "cloud" and len(e.parse().data[0].embedding) == 8
    assert sim.requests(path="/v1/embeddings")[0]["body"]["model"] == "sim-embed"
    forced = oc.embeddings.with_raw_response.create(model="auto", input="x", encoding_format="float",
                                                    extra_headers={"x-tiergate-offload": "cloud"})
    assert forced.headers["x-tiergate-model"] == "cloud"


def test_offloaded_messages_reach_an_anthropic_upstream_unchanged(edge_agent, cloud, sim):
    """Device -> cloud -> Anthropic-speaking upstream, natively at each hop: no translation."""
    agent = edge_agent(cloud.url)
    ac = anthropic.Anthropic(base_url=agent.url, api_key="unused", max_retries=0)
    msgs = [{"role": "user", "content": [{"type": "text", "text": "deep", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"},
                                              {"type": "text", "text": "ok"}]},
            {"role": "user", "content": "more"}]
    m = ac.messages.create(model="sim-claude", max_tokens=32, messages=msgs,
                           thinking={"type": "enabled", "budget_tokens": 1024},
                           extra_headers={"anthropic-beta": "beta-x"})
    assert [b.type for b in m.content] == ["thinking", "text"]
    (up,) = sim.requests()
    assert up["path"] == "/v1/messages" and up["body"]["messages"] == msgs
    assert up["body"]["thinking"]["type"] == "enabled" and up["headers"]["anthropic-beta"] == "beta-x"
