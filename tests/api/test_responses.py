"""The OpenAI Responses door through the official ``openai`` SDK over real HTTP: stateless
and streamed answers, function tools with a ``function_call_output`` follow-up,
``previous_response_id`` over stored responses, GET/DELETE by id, per-key isolation, and
hosted tools refused with a 400."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

FN = [{"type": "function", "name": "get_weather", "description": "weather for a city",
       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def test_stateless_create(client, sim):
    raw = client.responses.with_raw_response.create(model="fast", input="hello responses", instructions="be brief",
                                                    max_output_tokens=40, temperature=0.2, store=False)
    r = raw.parse()
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert r.output_text == "echo: hello responses [model=fast-a]"
    assert r.usage.input_tokens > 0 and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert raw.headers["x-tiergate-model"] == "fast"
    body = sim.requests(model="fast-a")[0]["body"]
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello responses"}]
    assert body["max_tokens"] == 40 and body["temperature"] == 0.2
    with pytest.raises(openai.NotFoundError):  # store: false keeps nothing
        client.responses.retrieve(r.id)


def test_stream_event_sequence_with_usage(client):
    events = list(client.responses.create(model="fast-b", input="one two three", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-1] == "response.completed" and kinds.count("response.output_text.delta") >= 3
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "echo: one two three [model=fast-b]"
    final = events[-1].response
    assert final.output_text == text and final.usage.output_tokens > 0
    assert client.responses.retrieve(final.id).output_text == text  # stored before response.completed


def test_stream_helper_accumulates(client):
    with client.responses.stream(model="fast", input="weather in Rome?", tools=FN) as s:
        for _ in s:
            pass
        final = s.get_final_response()
    (call,) = [o for o in final.output if o.type == "function_call"]
    assert call.name == "get_weather" and "city" in json.loads(call.arguments)


def test_function_tools_and_function_call_output_follow_up(client, sim):
    r = client.responses.create(model="fast", input="weather in Paris?", tools=FN, tool_choice="required")
    (call,) = [o for o in r.output if o.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments)["city"]
    sent = sim.requests(model="fast-a")[0]["body"]
    assert sent["tools"] == [{"type": "function", "function": {k: FN[0][k] for k in ("name", "parameters", "description")}}]
    assert sent["tool_choice"] == "required"
    # Stateless follow-up: the whole conversation in `input`.
    r2 = client.responses.create(model="fast", tools=FN, store=False, input=[
        {"role": "user", "content": "weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}])
    assert r2.output_text.startswith("tool said: sunny, 21C")
    # Stateful follow-up: only the tool output, after previous_response_id.
    r3 = client.responses.create(model="fast", tools=FN, previous_response_id=r.id, input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "rainy, 9C"}])
    assert r3.output_text.startswith("tool said: rainy, 9C") and r3.previous_response_id == r.id
    msgs = sim.requests(model="fast-a")[-1]["body"]["messages"]
    assert msgs[0] == {"role": "user", "content": "weather in Paris?"}
    assert msgs[1]["tool_calls"][0]["id"] == call.call_id
    assert msgs[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "rainy, 9C"}


def test_previous_response_id_continues_the_conversation(client, sim):
    r1 = client.responses.create(model="fast", input="my name is Ada", instructions="remember names")
    r2 = client.responses.create(model="fast", input="what is my name?", previous_response_id=r1.id)
    r3 = client.responses.create(model="fast", input="and again?", previous_response_id=r2.id)
    assert r3.output_text == "echo: and again? [model=fast-a]"
    msgs = sim.requests(model="fast-a")[-1]["body"]["messages"]
    # instructions belong to their own turn (not carried over); the turns are.
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[0]["content"] == "my name is Ada" and msgs[1]["content"] == r1.output_text
    with pytest.raises(openai.NotFoundError) as ei:
        client.responses.create(model="fast", input="x", previous_response_id="resp_nope")
    assert ei.value.body["param"] == "previous_response_id"


def test_get_and_delete(client):
    r = client.responses.create(model="fast", input="keep me")
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)


def test_json_schema_text_format(gateway_factory, monkeypatch, sim):
    from tests.api.conftest import CATALOG

    monkeypatch.setenv("SIM_KEY_A", "sk-sim-a")
    url, _ = gateway_factory(CATALOG.replace("capabilities: [tools, json]", "capabilities: [tools, json, json_schema]", 1))
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["answer", "n"], "additionalProperties": False}
    r = client.responses.create(model="fast", input="structured please",
                                text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}})
    assert json.loads(r.output_text) == {"answer": "structured please", "n": 1}
    rf = sim.requests(model="fast-a")[0]["body"]["response_format"]
    assert rf == {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}}


@pytest.mark.parametrize("tool", [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
                                  {"type": "code_interpreter", "container": {"type": "auto"}}])
def test_hosted_tools_need_openais_own_deployment(client, sim, tool):
    with pytest.raises(openai.BadRequestError) as ei:
        client.responses.create(model="fast", input="search the web", tools=[tool])
    assert tool["type"] in ei.value.message and ei.value.body["param"] == "tools"
    assert sim.requests() == []  # nothing was sent upstream


def test_a_key_never_reads_another_keys_response(gateway_factory, monkeypatch):
    from tests.api.conftest import CATALOG

    monkeypatch.setenv("SIM_KEY_A", "sk-sim-a")
    url, _ = gateway_factory(CATALOG, master_key="sk-master-r")
    admin = httpx.Client(base_url=url, headers={"authorization": "Bearer sk-master-r"})
    keys = [admin.post("/v1/keys", json={"tenant": t}).json()["key"] for t in ("acme", "globex", "acme")]
    a, b, a2 = (openai.OpenAI(base_url=url + "/v1", api_key=k, max_retries=0) for k in keys)
    r = a.responses.create(model="fast", input="tenant secret")
    assert a.responses.retrieve(r.id).output_text == r.output_text
    for other in (b, a2):  # another tenant, and another key of the same tenant
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(r.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.create(model="fast", input="continue", previous_response_id=r.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(r.id)
    assert a.responses.retrieve(r.id).id == r.id  # still there


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "fast"}, "input"),
    ({"model": "fast", "input": []}, "input"),
    ({"model": "fast", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "fast", "input": [{"type": "item_reference", "id": "x"}]}, "input.0"),
    ({"model": "fast", "input": "x", "text": {"format": {"type": "xml"}}}, "text"),
])
def test_malformed_bodies_are_openai_shaped_400s(gw, body, param):
    r = httpx.post(gw[0] + "/v1/responses", json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param


OWN = """
  - name: openai-own
    model: openai/gpt-own
    adapter: openai-compatible
    tier: 3
    api_base: "{sim}"
    input_cost_per_mtok: 2
    output_cost_per_mtok: 8
    capabilities: [tools, json, responses_api]
"""


def test_hosted_tools_pass_through_to_openais_own_responses_api(gateway_factory, monkeypatch, sim):
    from tests.api.conftest import CATALOG

    monkeypatch.setenv("SIM_KEY_A", "sk-sim-a")
    url, _ = gateway_factory(CATALOG.replace("aliases:", OWN.strip("\n") + "\naliases:", 1))
    c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    tools = [{"type": "web_search"}, *FN]
    raw = c.responses.with_raw_response.create(model="openai-own", input="latest news?", tools=tools)
    r = raw.parse()
    assert [o.type for o in r.output] == ["web_search_call", "message"]
    assert r.output_text == "echo: latest news? [model=gpt-own]"
    (req,) = sim.requests(path="/v1/responses")
    assert req["body"]["tools"] == tools and req["body"]["input"] == "latest news?"  # unchanged
    assert float(raw.headers["x-tiergate-cost-usd"]) == pytest.approx(
        (r.usage.input_tokens * 2 + r.usage.output_tokens * 8) / 1e6)
    assert c.responses.retrieve(r.id).output_text == r.output_text  # stored like any other
    events = list(c.responses.create(model="openai-own", input="stream news", tools=tools, stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert c.responses.retrieve(events[-1].response.id).output[0].type == "web_search_call"
    # The same hosted tool on a deployment that is not OpenAI's own is a clear 400.
    with pytest.raises(openai.BadRequestError):
        c.responses.create(model="fast", input="latest news?", tools=tools)


def test_a_conversation_over_the_store_limit_keeps_its_newest_turns(client, sim):
    """Past the 400 KB of a stored response (DynamoDB's item limit, kept by every store), the
    oldest turns are dropped, the response says how many (``x-tiergate-history-dropped``) and
    the model is told (a note on the first kept message); a turn too large to keep at all
    makes a follow-up a 400 naming the limit, in OpenAI's error shape."""
    chunk = "word " * 12_000  # 60 KB; the simulator echoes it: ~120 KB per turn
    prev = None
    for i in range(3):
        raw = client.responses.with_raw_response.create(model="fast", input=f"turn {i} {chunk}",
                                                        previous_response_id=prev)
        prev = raw.parse().id
        assert raw.headers.get("x-tiergate-history-dropped") == (None if i < 2 else "2")
    client.responses.create(model="fast", input="still there?", previous_response_id=prev)
    msgs = sim.requests(model="fast-a")[-1]["body"]["messages"]
    assert msgs[0]["role"] == "user" and msgs[0]["content"].startswith(
        "[tiergate: the 2 oldest messages of this conversation were dropped")
    assert "turn 1 " in msgs[0]["content"] and msgs[-1]["content"] == "still there?"

    huge = client.responses.create(model="fast", input="w " * 120_000)  # 240 KB, echoed: one turn over
    assert huge.store is True  # the response itself is kept (GET works) ...
    assert client.responses.retrieve(huge.id).id == huge.id
    with pytest.raises(openai.BadRequestError) as ei:  # ... its conversation is not
        client.responses.create(model="fast", input="more", previous_response_id=huge.id)
    assert ei.value.body["param"] == "previous_response_id" and "400 KB" in ei.value.body["message"]


def test_a_hosted_tool_follow_up_of_our_own_response_sends_the_conversation(gateway_factory, monkeypatch, sim):
    """OpenAI has never seen the id of a translated turn: a hosted-tool follow-up naming one
    is sent to OpenAI's Responses API with the stored conversation as input items (no
    previous_response_id); a follow-up of OpenAI's own response keeps its id, as OpenAI
    holds that conversation."""
    from tests.api.conftest import CATALOG

    monkeypatch.setenv("SIM_KEY_A", "sk-sim-a")
    url, _ = gateway_factory(CATALOG.replace("aliases:", OWN.strip("\n") + "\naliases:", 1))
    c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    tools = [{"type": "web_search"}, *FN]
    ours = c.responses.create(model="fast", input="my name is Ada")  # translated: our id
    r2 = c.responses.create(model="openai-own", input="latest news?", tools=tools, previous_response_id=ours.id)
    assert r2.output_text == "echo: latest news? [model=gpt-own]"
    sent = sim.requests(path="/v1/responses")[-1]["body"]
    assert "previous_response_id" not in sent
    assert sent["input"] == [
        {"type": "message", "role": "user", "content": "my name is Ada"},
        {"type": "message", "role": "assistant", "content": ours.output_text},
        {"role": "user", "content": "latest news?"}]
    assert sent["tools"] == tools
    r3 = c.responses.create(model="openai-own", input=[{"role": "user", "content": "and sports?"}], tools=tools,
                            previous_response_id=r2.id)
    sent = sim.requests(path="/v1/responses")[-1]["body"]
    assert sent["previous_response_id"] == r2.id and sent["input"] == [{"role": "user", "content": "and sports?"}]
    assert r3.output_text == "echo: and sports? [model=gpt-own]"
    # Streamed: the same rebuild.
    events = list(c.responses.create(model="openai-own", input="stream it", tools=tools, stream=True,
                                     previous_response_id=ours.id))
    assert events[-1].type == "response.completed"
    sent = sim.requests(path="/v1/responses")[-1]["body"]
    assert "previous_response_id" not in sent and sent["input"][0]["content"] == "my name is Ada"
