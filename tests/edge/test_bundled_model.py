"""The quick start as a new user meets it: ``tiergate serve``'s app (packaged catalog, the
local model plugin, no API key) under uvicorn, asked through the ``openai`` SDK and
LangChain. The model is the real bundled SmolLM2-135M-Instruct; sampling is seeded, so
the answers are the same on every run."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.gateway import serve_app
from tiergate.cli.serve import local_plugins
from tiergate.compose import build_app
from tiergate.config.adapters import LITELLM
from tiergate.providers.registry import default_registry
from tiergate.settings import Settings

pytestmark = pytest.mark.bundled

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


def _app(tmp: Path, registry=None):  # type: ignore[no-untyped-def]
    s = Settings(data_dir=tmp / "data", store="memory")
    parts = {"registry": registry} if registry is not None else {}
    return build_app(s, plugins=local_plugins(s), **parts)


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    app = _app(tmp_path_factory.mktemp("quick"))
    with serve_app(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def client(quick_start) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=quick_start[0] + "/v1", api_key="unused-without-master-key", max_retries=0)


def ask(client: openai.OpenAI, text: str, **kw):  # type: ignore[no-untyped-def]
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": text}],
                                                           **kw)
    assert raw.headers["x-tiergate-model"] == "local"
    return raw.parse()


#: Short factual questions and the words a right answer contains. Not picked to pass: the
#: set is the one measured for the README, misses included (SmolLM2-135M said the capital of
#: Germany was "Der Führer" and that "Bark" is the animal that barks).
FACTS = [
    ("What is the capital of France?", ("paris",)), ("What is the capital of Japan?", ("tokyo",)),
    ("What is the capital of Italy?", ("rome",)), ("What is the capital of Germany?", ("berlin",)),
    ("How many legs does a spider have?", ("eight", "8")), ("How many days are in a week?", ("seven", "7")),
    ("Which animal says meow?", ("cat",)), ("Which animal barks?", ("dog",)),
    ("What color is the sky on a clear day?", ("blue",)), ("What is 2 + 2?", ("4", "four")),
    ("What is the largest planet in our solar system?", ("jupiter",)), ("What do bees make?", ("honey",)),
    ("What is the opposite of hot?", ("cold",)), ("What is water made of?", ("hydrogen",)),
    ("Who wrote Romeo and Juliet?", ("shakespeare",)),
]
#: Haiku subjects: the model writes a short poem for each, in three lines for only 3 of
#: these 12 when measured, so the line count is not what is checked (see the README).
POEMS = ["the moon", "the sea", "autumn leaves", "a cat", "winter", "the city at night", "coffee", "rain",
         "a mountain", "spring flowers", "the sun", "friendship"]


def test_ordinary_questions_get_real_answers(client: openai.OpenAI) -> None:
    """What the bundled 135M model does reliably, checked over sets measured beforehand
    (sampling is seeded: the same answers on every run): every answer ends by itself well
    before the cap (the old default looped to 1,024 tokens); short factual questions come
    back right (at least 11 of 15 required, and the README's own example). The count
    depends on the CPU llama.cpp was built for, because the float arithmetic differs with
    the SIMD path and a 135M model's greedy picks flip with it: 13 of 15 on an Intel Xeon
    (AVX-512) build, 11 of 15 on an AMD EPYC build (it says a fox meows and barks). The
    floor is the lowest measured; a model answering junk gets ~0;
    a poem request gets a short poem that is neither a loop nor the question echoed back.
    A three-line haiku is *not* reliable at this size (3 of 12 subjects), so it is not
    asserted: that needs a bigger model (Qwen2.5-0.5B wrote 12 of 12)."""
    from tiergate.cascade.scoring import expectations, score_text

    right: list[str] = []
    for question, words in FACTS:
        r = ask(client, question, max_tokens=200)
        answer = r.choices[0].message.content
        assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens < 100, (question, answer)
        if any(w in answer.lower() for w in words):
            right.append(question)
    assert "What is the capital of France?" in right
    assert len(right) >= 11, f"{len(right)}/15 right; missed: {[q for q, _ in FACTS if q not in right]}"
    for subject in POEMS:
        body = {"messages": [{"role": "user", "content": f"Write a haiku about {subject}."}], "max_tokens": 200}
        r = ask(client, body["messages"][0]["content"], max_tokens=200)
        poem = r.choices[0].message.content
        assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens < 100, poem
        score = score_text(expectations(body), poem, finish_reason="stop")
        assert not [x for x in score.reasons if x.startswith("degenerate")], (subject, poem, score.reasons)
        assert len(poem.split()) >= 5, (subject, poem)


def test_system_messages_reach_the_model(client: openai.OpenAI) -> None:
    plain = ask(client, "hi", max_tokens=1)
    own = client.chat.completions.create(model="local", max_tokens=1, messages=[
        {"role": "system", "content": "You are a pirate who speaks only in riddles about the sea."},
        {"role": "user", "content": "hi"}])
    # The client's system prompt replaces the default one, and is counted: it reached the prompt.
    assert own.usage.prompt_tokens > plain.usage.prompt_tokens


def test_runaway_answers_stop_at_the_local_default(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="local", messages=[
        {"role": "user", "content": "Count from one to one thousand, in words, one per line."}])
    assert r.usage.completion_tokens <= 256   # the local default max_tokens: a loop ends in seconds


def test_tool_call_and_answer_through_the_openai_sdk(client: openai.OpenAI) -> None:
    msgs: list[dict] = [{"role": "user", "content": "What's the weather in Paris?"}]
    r = client.chat.completions.create(model="auto", messages=msgs, tools=[WEATHER])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    msgs += [choice.message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"}]
    final = client.chat.completions.create(model="auto", messages=msgs, tools=[WEATHER])
    assert final.choices[0].finish_reason == "stop" and not final.choices[0].message.tool_calls
    assert "sunny" in final.choices[0].message.content.lower()
    # Streamed, the call arrives whole.
    chunks = list(client.chat.completions.create(model="auto", messages=msgs[:1], tools=[WEATHER], stream=True))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "get_weather"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_langchain_bind_tools_without_a_cloud_key(quick_start) -> None:  # type: ignore[no-untyped-def]
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return "18 C and sunny"

    llm = ChatOpenAI(model="auto", base_url=quick_start[0] + "/v1", api_key="unused", max_retries=0)
    msg = llm.bind_tools([get_weather]).invoke("What's the weather in Paris?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "get_weather"
    assert msg.tool_calls[0]["args"] == {"city": "Paris"}


def test_json_schema_and_json_object_answers_parse(client: openai.OpenAI) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    r = client.chat.completions.create(model="auto", response_format=fmt, messages=[
        {"role": "user", "content": "Extract the person: John is 31 years old."}])
    assert json.loads(r.choices[0].message.content) == {"name": "John", "age": 31}
    # The finding's case: json_object ran to 1,024+ tokens (98 s) and returned unterminated JSON.
    r = client.chat.completions.create(model="auto", response_format={"type": "json_object"}, messages=[
        {"role": "user", "content": "Give me a JSON object describing a cat with name and age."}])
    assert isinstance(json.loads(r.choices[0].message.content), dict)
    assert r.usage.completion_tokens <= 256
    # Parsed by the SDK's own structured-output helper.
    parsed = client.beta.chat.completions.parse(model="auto", response_format=_person_model(), messages=[
        {"role": "user", "content": "Extract the person: Mary is 45 years old."}])
    assert parsed.choices[0].message.parsed is not None


def _person_model():  # type: ignore[no-untyped-def]
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    return Person


def test_client_disconnect_stops_local_generation(quick_start, client: openai.OpenAI) -> None:
    url, app = quick_start
    runtime = next(p for p in app.state.services.health_sources if hasattr(p, "runtime")).runtime
    body = {"model": "local", "stream": True, "max_tokens": 1000, "temperature": 1.5,
            "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}
    before = runtime.tokens_generated     # a counter over the whole module's requests
    with httpx.Client(timeout=30) as http, http.stream("POST", url + "/v1/chat/completions", json=body) as r:
        lines = r.iter_lines()
        for _ in range(5):
            next(lines)
        at_close = runtime.tokens_generated
    # The generator notices the disconnect and stops within a token; nothing keeps running.
    time.sleep(0.5)
    settled = runtime.tokens_generated
    time.sleep(0.5)
    assert runtime.tokens_generated == settled
    assert settled - at_close < 30, (at_close, settled)
    assert settled - before < 1000        # it never ran to max_tokens
    # The next request does not wait behind the dead one: the model is free at once.
    r = ask(client, "What is the capital of France?", max_tokens=20)
    assert "Paris" in r.choices[0].message.content


def test_cloud_key_without_litellm_answers_locally_never_500(tmp_path: Path, monkeypatch) -> None:
    # Finding 2: ".[server,edge]" plus OPENAI_API_KEY. "litellm is not installed" is simulated
    # by the registration's check (the real one uses find_spec); the rest is the real app.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    registry = default_registry()
    registry.register(LITELLM, lambda: pytest.fail("the litellm adapter must not be built"),
                      check=lambda spec: "litellm is not installed (pip install 'tiergate[litellm]')")
    app = _app(tmp_path, registry)
    with serve_app(app) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        r = c.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=30)
        assert r.headers["x-tiergate-model"] == "local" and "Paris" in r.parse().choices[0].message.content
        direct = httpx.post(url + "/v1/chat/completions", timeout=30, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
        assert direct.status_code != 500
        if direct.status_code != 200:  # no fallback fits: the reason and the fix, not a traceback
            assert "pip install 'tiergate[litellm]'" in direct.text
        models = httpx.get(url + "/v1/models", timeout=10).json()["data"]
        gpt = next(m for m in models if m["id"] == "gpt-4o-mini")
        assert gpt.get("available") is False or "litellm" in json.dumps(gpt)
