"""The semantic cache through the ``openai`` SDK over real HTTP: the real all-MiniLM-L6-v2
embedder (from its registry package, offline) and a real sqlite-vec index, one test per
safety rule: exact scope, only the last user message compared, numbers / quoted text /
code / URLs / names / negations exact, tools / images / JSON schema only when opted in,
``semantic-hit`` and similarity headers, stream replay, and ``POST /v1/route``."""

from __future__ import annotations

import httpx
import openai
import pytest

from tiergate_edge.semantic import semantic_cache, unavailable

MASTER = "sk-master-sem"
CAT = """
models:
  - {name: m, model: openai/sem-m, adapter: openai-compatible, tier: 1, api_base: "{sim}",
     input_cost_per_mtok: 1000, output_cost_per_mtok: 2000, capabilities: [tools, json, json_schema, vision]}
  - {name: other, model: openai/sem-other, adapter: openai-compatible, tier: 1, api_base: "{sim}",
     capabilities: [tools, json]}
cache:
  exact: {ttl_s: 600}
  semantic: {threshold: 0.8, ttl_s: 600%(extra)s}
"""
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}}}}]


@pytest.fixture
def gw(gateway_factory, tmp_path):
    assert unavailable() is None, unavailable()

    def make(extra: str = ""):
        sem = semantic_cache(tmp_path, path=tmp_path / f"sem-{len(extra)}.sqlite3")
        url, app = gateway_factory(CAT % {"extra": extra}, master_key=MASTER, environment="test",
                                   cache_path=tmp_path / f"exact-{len(extra)}.sqlite3",
                                   parts={"semantic_cache": sem})
        return url
    return make


def ask(url: str, text: str, *, key: str = MASTER, model: str = "m", history: list | None = None, **kw):
    c = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    msgs = [*(history or []), {"role": "user", "content": text}]
    return c.chat.completions.with_raw_response.create(model=model, messages=msgs, temperature=0, **kw)


def status(r) -> str:
    return r.headers["x-tiergate-cache"]


def test_a_paraphrase_gets_the_answer_with_its_similarity_and_costs_nothing(gw, sim):
    url = gw()
    first = ask(url, "What is the capital of France?")
    assert status(first) == "stored"
    para = ask(url, "Could you tell me the capital of France, please?")
    assert status(para) == "semantic-hit"
    assert 0.8 <= float(para.headers["x-tiergate-cache-similarity"]) < 1
    body = para.parse()
    assert body.choices[0].message.content == first.parse().choices[0].message.content
    assert body.usage.model_extra["cost_usd"] == 0 and body.usage.model_extra["cache_saved_usd"] > 0
    # The same request again is an exact hit (exact first, never hidden by the semantic one).
    assert status(ask(url, "What is the capital of France?")) == "hit"
    assert len(sim.requests(model="sem-m")) == 1
    recs = httpx.get(url + "/v1/usage", params={"period": "all"},
                     headers={"authorization": f"Bearer {MASTER}"}).json()["data"]
    assert sorted(r["outcome"] for r in recs) == ["cache_hit", "cache_hit", "ok"]


@pytest.mark.parametrize(("stored", "asked", "kind"), [
    ("What is the capital of France?", "What is the capital of Germany?", "names"),
    ("convert 5 km to miles", "convert 50 km to miles", "numbers"),
    ("convert 5 km to miles", "convert 5 km to meters", "units"),
    ("convert 5 km to miles", "convert 5 miles to km", "another order"),
    ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?", "negation"),
    ('Translate "good morning" into French', 'Translate "good night" into French', "quoted text"),
    ("What does `x = a[1:]` do in Python?", "What does `x = a[:1]` do in Python?", "code"),
    ("Summarize https://example.com/report-2023 please", "Summarize https://example.com/report-2024 please",
     "URLs"),
    ("Tell me about Apple.", "Tell me about apples.", "names"),
    ("What is the capital of France?", "Quelle est la capitale de la France ?", "words"),
])
def test_near_misses_never_hit(gw, sim, stored, asked, kind):
    url = gw()
    assert status(ask(url, stored)) == "stored"
    route = httpx.post(url + "/v1/route", json={"model": "m", "temperature": 0,
                                                "messages": [{"role": "user", "content": asked}]},
                       headers={"authorization": f"Bearer {MASTER}"}).json()["cache"]
    assert route["would_hit"] is False and route["status"] == "miss" and kind in route["why"], route
    r = ask(url, asked)
    assert status(r) == "stored"
    assert len(sim.requests(model="sem-m")) == 2


def test_only_the_last_user_message_is_compared_everything_else_is_exact_scope(gw, sim):
    url = gw()
    q, para = "What is the capital of France?", "Tell me the capital of France."
    hist = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert status(ask(url, q, history=hist)) == "stored"
    assert status(ask(url, para, history=hist)) == "semantic-hit"
    other_turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there!"}]
    assert status(ask(url, para, history=other_turns)) == "stored"
    assert status(ask(url, para, history=[{"role": "system", "content": "Answer in French."}, *hist])) == "stored"
    assert status(ask(url, para, history=hist, model="other")) == "stored"
    assert status(ask(url, para, history=hist, max_tokens=5)) == "stored"
    assert status(ask(url, para, history=hist, seed=3)) == "stored"
    assert status(ask(url, para, history=hist, response_format={"type": "json_object"})) == "stored"
    # Another tenant never sees this tenant's answers, semantically either.
    key = httpx.post(url + "/v1/keys", json={"tenant": "globex"},
                     headers={"authorization": f"Bearer {MASTER}"}).json()["key"]
    assert status(ask(url, para, history=hist, key=key)) == "stored"


def test_tools_images_and_json_schema_are_exact_only_unless_opted_in(gw, sim):
    url = gw()
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}
    image = [{"type": "text", "text": "What is in this picture?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    image2 = [{"type": "text", "text": "Tell me what is in this picture."}, image[1]]
    for extra in ({"tools": TOOLS}, {"response_format": schema}):
        assert status(ask(url, "What is the capital of France?", **extra)) == "stored"
        r = ask(url, "Tell me the capital of France.", **extra)
        assert status(r) == "stored" and "not opted in" in r.headers["x-tiergate-cache-reason"]
    c = openai.OpenAI(base_url=url + "/v1", api_key=MASTER, max_retries=0)
    c.chat.completions.create(model="m", messages=[{"role": "user", "content": image}], temperature=0)
    r = c.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": image2}],
                                                    temperature=0)
    assert status(r) == "stored" and "images" in r.headers["x-tiergate-cache-reason"]
    opted = gw(", allow_tools: true, allow_json_schema: true, allow_images: true")
    for extra in ({"tools": TOOLS}, {"response_format": schema}):
        assert status(ask(opted, "What is the capital of France?", **extra)) == "stored"
        assert status(ask(opted, "Tell me the capital of France.", **extra)) == "semantic-hit"
    c2 = openai.OpenAI(base_url=opted + "/v1", api_key=MASTER, max_retries=0)
    c2.chat.completions.create(model="m", messages=[{"role": "user", "content": image}], temperature=0)
    r = c2.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": image2}],
                                                     temperature=0)
    assert status(r) == "semantic-hit"  # same image (exact), question compared by similarity
    other_image = [image2[0], {"type": "image_url", "image_url": {"url": "data:image/png;base64,R0lGODlh"}}]
    r = c2.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": other_image}],
                                                     temperature=0)
    assert status(r) == "stored"


def test_a_semantic_hit_replays_as_a_stream(gw, sim):
    url = gw()
    first = ask(url, "How do I reverse a list in Python?").parse()
    c = openai.OpenAI(base_url=url + "/v1", api_key=MASTER, max_retries=0)
    with c.chat.completions.with_streaming_response.create(
            model="m", temperature=0, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "How can I reverse a list in Python?"}]) as r:
        assert r.headers["x-tiergate-cache"] == "semantic-hit"
        chunks = list(r.parse())
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == first.choices[0].message.content
    assert chunks[-1].usage.model_extra["cost_usd"] == 0


def test_sampled_requests_are_never_served_semantically(gw, sim):
    url = gw()
    c = openai.OpenAI(base_url=url + "/v1", api_key=MASTER, max_retries=0)
    q = [{"role": "user", "content": "What is the capital of France?"}]
    c.chat.completions.create(model="m", messages=q, temperature=0.9)
    r = c.chat.completions.with_raw_response.create(
        model="m", temperature=0.9, messages=[{"role": "user", "content": "Tell me the capital of France."}])
    assert status(r) == "bypass"


def test_route_says_whether_a_request_would_hit_and_why(gw, sim):
    url = gw()
    h = {"authorization": f"Bearer {MASTER}"}

    def route(text: str, **kw) -> dict:
        body = {"model": "m", "temperature": 0, "messages": [{"role": "user", "content": text}], **kw}
        r = httpx.post(url + "/v1/route", json=body, headers=h)
        assert r.status_code == 200, r.text
        return r.json()["cache"]

    empty = route("convert 5 km to miles")
    assert empty["would_hit"] is False and "nothing cached" in empty["why"]
    ask(url, "convert 5 km to miles")
    exact = route("convert 5 km to miles")
    assert exact["would_hit"] is True and exact["status"] == "hit" and "exact request is cached" in exact["why"]
    para = route("Convert five kilometers to miles")
    assert para["would_hit"] is True and para["status"] == "semantic-hit" and para["similarity"] >= 0.8
    assert "guard matches" in para["why"] and para["model"] == "m"
    near = route("convert 50 km to miles")
    assert near["would_hit"] is False and "differs in numbers" in near["why"]
    tools = route("Convert five kilometers to miles", tools=TOOLS)
    assert tools["would_hit"] is False and "tools (not opted in)" in tools["why"]
    sampled = route("convert 5 km to miles", temperature=1)
    assert sampled["status"] == "bypass" and "not deterministic" in sampled["why"]
    # The dry run wrote nothing: the paraphrase is still a first-time semantic hit.
    assert status(ask(url, "Convert five kilometers to miles")) == "semantic-hit"
    assert len(sim.requests(model="sem-m")) == 1
