"""The llama-cpp adapter on the tiny GGUF: contract, determinism, streaming, swap, errors."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from tests.support.tiny_gguf import piece_id
from tiergate.config.catalog import ModelSpec
from tiergate.errors import ClientDisconnected, UpstreamBadRequest, UpstreamServerError
from tiergate.providers.base import Provider, ProviderCall
from tiergate_edge.llama_provider import LlamaCppProvider
from tiergate_edge.llama_runtime import LlamaRuntime

MSG = [{"role": "user", "content": "hello world"}]


def spec(path: Path, name: str = "local", **kw) -> ModelSpec:
    return ModelSpec(name=name, id=name, model=str(path), adapter="llama-cpp", tier=0, **kw)


@pytest.fixture
def provider(tmp_path: Path) -> LlamaCppProvider:
    return LlamaCppProvider(LlamaRuntime(models_dir=tmp_path, n_threads=1, n_ctx_cap=512))


def call(s: ModelSpec, **body) -> ProviderCall:
    return ProviderCall(deployment=s, body={"messages": MSG, "temperature": 0, **body}, timeout_s=30)


def test_is_a_provider(provider: LlamaCppProvider) -> None:
    assert isinstance(provider, Provider)


async def test_complete_is_openai_shaped_with_usage_and_deterministic(provider, tiny_gguf) -> None:
    s = spec(tiny_gguf)
    a = await provider.complete(call(s, max_tokens=8))
    b = await provider.complete(call(s, max_tokens=8))
    assert a["object"] == "chat.completion" and a["model"] == "local"
    assert a["choices"][0]["message"]["role"] == "assistant"
    assert a["choices"][0]["finish_reason"] == "length"
    # llama-cpp-python counts tokens held back mid-UTF-8 too, so >= the requested 8.
    assert a["usage"]["completion_tokens"] >= 8 and a["usage"]["prompt_tokens"] > 5
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]


async def test_stream_matches_complete_and_ends_with_usage(provider, tiny_gguf) -> None:
    s = spec(tiny_gguf)
    full = await provider.complete(call(s, max_tokens=12))
    chunks = [c async for c in provider.stream(call(s, max_tokens=12))]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == full["choices"][0]["message"]["content"]
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"] == full["usage"]


async def test_stream_stops_generating_when_the_consumer_leaves(provider, tiny_gguf) -> None:
    s = spec(tiny_gguf)
    agen = provider.stream(call(s, max_tokens=400))
    async for _ in agen:
        break
    await agen.aclose()
    # The lock is free again: a new request runs at once.
    r = await asyncio.wait_for(provider.complete(call(s, max_tokens=2)), timeout=10)
    assert r["usage"]["completion_tokens"] >= 2


async def test_event_loop_stays_free_during_generation(provider, tiny_gguf) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    t = asyncio.create_task(ticker())
    await provider.complete(call(spec(tiny_gguf), max_tokens=200))
    t.cancel()
    assert ticks > 5


async def test_one_model_resident_with_swap(provider, tiny_gguf, tiny_gguf_alt) -> None:
    rt = provider.runtime
    assert rt.info()["loaded"] is False                      # lazy: nothing loaded yet
    await provider.complete(call(spec(tiny_gguf), max_tokens=1))
    assert rt.info()["path"] == str(tiny_gguf) and rt.loads == 1
    await provider.complete(call(spec(tiny_gguf_alt, name="alt"), max_tokens=1))
    assert rt.info()["path"] == str(tiny_gguf_alt) and rt.loads == 2
    await provider.complete(call(spec(tiny_gguf_alt, name="alt"), max_tokens=1))
    assert rt.loads == 2


async def test_context_is_trained_context_capped(tmp_path, tiny_gguf) -> None:
    rt = LlamaRuntime(models_dir=tmp_path, n_threads=1, n_ctx_cap=512)
    assert rt.context_window(spec(tiny_gguf)) == 512
    assert LlamaRuntime(models_dir=tmp_path, n_ctx_cap=100_000).context_window(spec(tiny_gguf)) == 2048
    assert rt.context_window(spec(tiny_gguf, context_window=300)) == 300


async def test_named_chat_format_is_used(provider, tiny_gguf) -> None:
    await provider.complete(call(spec(tiny_gguf, chat_format="chatml"), max_tokens=1))
    assert provider.runtime.info()["chat_format"] == "chatml"


async def test_prompt_beyond_context_is_a_bad_request(provider, tiny_gguf) -> None:
    long = [{"role": "user", "content": "the quick brown fox " * 400}]
    with pytest.raises(UpstreamBadRequest) as e:
        await provider.complete(ProviderCall(spec(tiny_gguf), {"messages": long, "max_tokens": 8}, 30))
    assert e.value.status == 400 and not e.value.retryable


async def test_n_above_one_is_a_bad_request(provider, tiny_gguf) -> None:
    with pytest.raises(UpstreamBadRequest):
        await provider.complete(call(spec(tiny_gguf), n=2))


PICK = {"type": "function", "function": {"name": "pick", "description": "choose a colour", "parameters": {
    "type": "object", "properties": {"colour": {"enum": ["red", "green"]}, "n": {"type": "integer", "maximum": 9}},
    "required": ["colour", "n"], "additionalProperties": False}}}


@pytest.fixture
def wide(tmp_path: Path) -> LlamaCppProvider:
    """The tiny model's whole trained context (tool lists are long in its byte-level tokens)."""
    return LlamaCppProvider(LlamaRuntime(models_dir=tmp_path, n_threads=1, n_ctx_cap=2048))


async def test_forced_tool_call_is_grammar_constrained_even_for_a_random_model(wide, tiny_gguf) -> None:
    # Random weights cannot write a tool call on their own: the grammar makes it well formed.
    provider = wide
    r = await provider.complete(call(spec(tiny_gguf), tools=[PICK], tool_choice="required", max_tokens=300,
                                     parallel_tool_calls=False))
    choice = r["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    [tc] = choice["message"]["tool_calls"]
    args = json.loads(tc["function"]["arguments"])
    assert tc["function"]["name"] == "pick" and args["colour"] in ("red", "green") and isinstance(args["n"], int)
    named = await provider.complete(call(spec(tiny_gguf), tools=[PICK], max_tokens=300,
                                         tool_choice={"type": "function", "function": {"name": "pick"}}))
    assert named["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "pick"
    with pytest.raises(UpstreamBadRequest):
        await provider.complete(call(spec(tiny_gguf), tools=[PICK],
                                     tool_choice={"type": "function", "function": {"name": "nope"}}))


async def test_json_schema_answer_parses_even_for_a_random_model(wide, tiny_gguf) -> None:
    provider = wide
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "level": {"enum": [1, 2, 3]}},
              "required": ["ok", "level"], "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    r = await provider.complete(call(spec(tiny_gguf), response_format=fmt, max_tokens=200))
    out = json.loads(r["choices"][0]["message"]["content"])
    assert set(out) == {"ok", "level"} and out["level"] in (1, 2, 3)
    # json_object cut off by max_tokens still parses (closed at the last complete value).
    for n in (2, 5, 12):
        r = await provider.complete(call(spec(tiny_gguf), response_format={"type": "json_object"}, max_tokens=n))
        assert isinstance(json.loads(r["choices"][0]["message"]["content"]), dict)


async def test_a_cancelled_request_stops_generating_within_a_token(wide, tiny_gguf) -> None:
    provider = wide
    rt = provider.runtime
    no_end = {"2": -100, "4": -100}       # no </s>, no <|im_end|>: it would run to max_tokens
    task = asyncio.create_task(provider.complete(call(spec(tiny_gguf), max_tokens=1500, logit_bias=no_end)))
    while rt.tokens_generated < 5:
        await asyncio.sleep(0.001)
    task.cancel()                        # what an attempt timeout or a gone client does
    with pytest.raises(asyncio.CancelledError):
        await task
    at_cancel = rt.tokens_generated
    await asyncio.sleep(0.3)
    assert rt.tokens_generated - at_cancel <= 1
    r = await asyncio.wait_for(provider.complete(call(spec(tiny_gguf), max_tokens=2)), timeout=10)
    assert r["usage"]["completion_tokens"] >= 2


async def test_a_cancel_stops_generation_even_while_all_output_is_held_back(wide, tiny_gguf) -> None:
    """Every sampled token is an "a" and the stop sequence is a long run of "a": llama-cpp-python
    holds all the text back as a possible stop and emits no chunk at all, so only a check per
    sampled token (not per chunk) can see the cancel."""
    provider = wide
    rt = provider.runtime
    a = piece_id("a")
    held = call(spec(tiny_gguf), max_tokens=400, logit_bias={str(a): 100}, stop=["a" * 500])
    task = asyncio.create_task(provider.complete(held))
    before = rt.tokens_generated
    while rt.tokens_generated < before + 5:
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    at_cancel = rt.tokens_generated
    await asyncio.sleep(0.3)
    assert rt.tokens_generated - at_cancel <= 1, (at_cancel, rt.tokens_generated)
    assert rt.tokens_generated - before < 100


async def test_a_non_streamed_answer_stops_when_its_client_is_gone(wide, tiny_gguf) -> None:
    provider = wide
    rt = provider.runtime
    gone = asyncio.Event()
    no_end = {"2": -100, "4": -100}
    c = dataclasses.replace(call(spec(tiny_gguf), max_tokens=1500, logit_bias=no_end), client_gone=gone.wait)
    task = asyncio.create_task(provider.complete(c))
    before = rt.tokens_generated
    while rt.tokens_generated < before + 5:
        await asyncio.sleep(0.001)
    gone.set()                           # what the door's disconnect watcher reports
    with pytest.raises(ClientDisconnected) as e:
        await task
    assert e.value.status == 499 and not e.value.retryable and not e.value.counts_against_deployment
    stopped = rt.tokens_generated        # the model had stopped when the error was raised
    await asyncio.sleep(0.3)
    assert rt.tokens_generated == stopped and stopped - before < 100
    # A client that stays gets its answer; the watcher is not left behind.
    stays = asyncio.Event()
    r = await provider.complete(dataclasses.replace(call(spec(tiny_gguf), max_tokens=3), client_gone=stays.wait))
    assert r["usage"]["completion_tokens"] == 3
    await asyncio.sleep(0)               # the cancelled watcher finishes on the next loop turn
    assert not [t for t in asyncio.all_tasks() if "Event.wait" in repr(t.get_coro())]


async def test_auto_tools_go_to_a_template_that_renders_them(tmp_path, provider) -> None:
    """A GGUF whose template renders tools decides ``auto`` itself: the tools reach its
    template (the prompt grows by them, with no tool list of ours), nothing is forced."""
    from tests.support.tiny_gguf import TOOLS_TEMPLATE, write_tiny_gguf

    s = spec(write_tiny_gguf(tmp_path / "tools.gguf", chat_template=TOOLS_TEMPLATE), name="tools")
    fn = {"name": "get_weather", "description": "Get the weather", "parameters": {"type": "object", "properties": {}}}
    tools = [{"type": "function", "function": fn}]
    assert provider.runtime.resolve(s).template_tools
    auto = await provider.complete(call(s, tools=tools, max_tokens=2))
    none = await provider.complete(call(s, tools=tools, tool_choice="none", max_tokens=2))
    assert auto["usage"]["prompt_tokens"] > none["usage"]["prompt_tokens"] + 10
    # The plain ChatML model has no tools in its template: the keyword rule (our tool list) applies.
    plain = spec(write_tiny_gguf(tmp_path / "plain.gguf"), name="plain")
    assert not provider.runtime.resolve(plain).template_tools


async def test_models_stay_resident_under_the_memory_budget_lru(tmp_path, tiny_gguf, tiny_gguf_alt) -> None:
    roomy = LlamaCppProvider(LlamaRuntime(models_dir=tmp_path, n_threads=1, n_ctx_cap=512, memory_budget_mb=64))
    for s in (spec(tiny_gguf), spec(tiny_gguf_alt, name="alt"), spec(tiny_gguf)):
        await roomy.complete(call(s, max_tokens=1))
    assert roomy.runtime.loads == 2 and roomy.runtime.evictions == 0
    assert len(roomy.runtime.info()["resident"]) == 2
    tight = LlamaCppProvider(LlamaRuntime(models_dir=tmp_path, n_threads=1, n_ctx_cap=512, memory_budget_mb=0))
    for s in (spec(tiny_gguf), spec(tiny_gguf_alt, name="alt"), spec(tiny_gguf)):
        await tight.complete(call(s, max_tokens=1))
    assert tight.runtime.loads == 3 and tight.runtime.evictions == 2      # one at a time: LRU out
    assert [r["path"] for r in tight.runtime.info()["resident"]] == [str(tiny_gguf)]


async def test_a_models_own_context_and_threads_come_from_its_entry(tmp_path, tiny_gguf) -> None:
    from tiergate_edge.model_store import ModelEntry, ModelStore

    ModelStore(tmp_path).put(ModelEntry(name="tiny", path=tiny_gguf, source=str(tiny_gguf), n_ctx=256, n_threads=2))
    rt = LlamaRuntime(models_dir=tmp_path, n_threads=1, n_ctx_cap=1024)
    lm = rt.resolve(ModelSpec(name="t", id="t", model="tiny", adapter="llama-cpp", tier=0))
    assert (lm.path, lm.n_ctx, lm.n_threads) == (tiny_gguf, 256, 2)


async def test_missing_or_invalid_model_file_is_an_upstream_error(provider, tmp_path) -> None:
    with pytest.raises(UpstreamServerError) as e:
        await provider.complete(call(spec(tmp_path / "missing.gguf"), max_tokens=1))
    assert e.value.code == "local_model_unavailable"
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(UpstreamServerError):
        await provider.complete(call(spec(bad, name="bad"), max_tokens=1))


LOAD_AND_ANSWER = r"""
import sys
from tiergate_edge import llama_runtime as rt
import llama_cpp
llm = rt._Llama(model_path=sys.argv[1], n_ctx=2048, n_threads=2, seed=1, verbose=False)
out = llm.create_chat_completion(messages=[{"role": "user", "content": "What is the capital of France?"}],
                                 max_tokens=16)
print(rt.AMX_BUILD, llm.model_params.use_extra_bufts, out["choices"][0]["message"]["content"].strip()[:40])
"""


def test_the_bundled_model_answers_on_this_build_without_crashing() -> None:
    """A build with llama.cpp's AMX matmul loads on plain CPU buffers (its AMX path
    segfaults in the first decode on AMX machines); any other build keeps llama.cpp's
    defaults. In a fresh interpreter: a crash there is a return code, not a dead test run."""
    import subprocess
    import sys

    from tiergate_edge import default_model

    path = default_model.bundled_path(default_model.BUNDLED_REF)
    out = subprocess.run([sys.executable, "-c", LOAD_AND_ANSWER, str(path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    amx, extra_bufts, answer = out.stdout.strip().splitlines()[-1].split(" ", 2)
    assert extra_bufts == str(amx == "False")
    assert len(answer) > 10  # words (what they say is test_bundled_model's part)
