"""Native-adapter specifics: SSE decoding, Retry-After parsing, pooling, odd upstream streams."""

from __future__ import annotations

import asyncio
import email.utils

import httpx
import pytest

from tests.providers.conftest import CASES, call_for
from tests.support.upstream import UpstreamSim
from tiergate import errors
from tiergate.providers.error_mapping import error_for_status, parse_retry_after
from tiergate.providers.openai_compat import OpenAICompatProvider
from tiergate.providers.registry import default_registry
from tiergate.providers.sse import DONE, SSEDecoder, format_event, format_sse

NATIVE = CASES[0]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_sse_decoder_handles_any_split(size: int):
    stream = (b": comment\r\nevent: message_start\r\ndata: {\"a\": 1}\r\n\r\n"
              b"data: line1\ndata: line2\n\n" + format_sse({"b": "\u00e9"}) + DONE)
    dec, events = SSEDecoder(), []
    for i in range(0, len(stream), size):
        events += dec.feed(stream[i:i + size])
    events += dec.flush()
    assert events == [("message_start", b'{"a": 1}'), (None, b"line1\nline2"),
                      (None, '{"b":"\u00e9"}'.encode()), (None, b"[DONE]")]


def test_sse_decoder_flushes_an_unterminated_event():
    dec = SSEDecoder()
    assert dec.feed(b"data: {}\n") == []
    assert dec.flush() == [(None, b"{}")]
    assert format_event("ping", {"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_parse_retry_after_forms():
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 42, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(42, abs=1)
    assert parse_retry_after({"retry-after": email.utils.formatdate(now - 60, usegmt=True)}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_error_for_status_maps_by_status_and_code():
    body = b'{"error": {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"}}'
    err = error_for_status(400, None, body, "d1")
    assert isinstance(err, errors.UpstreamBadRequest) and err.code == "context_length_exceeded"
    assert err.details == {"deployment": "d1", "upstream_status": 400, "upstream_type": "invalid_request_error",
                           "upstream_code": "context_length_exceeded"}
    assert isinstance(error_for_status(504, None, b"", "d1"), errors.UpstreamTimeout)
    assert isinstance(error_for_status(502, None, b"<html>bad gateway</html>", "d1"), errors.UpstreamServerError)
    assert "bad gateway" in error_for_status(502, None, b"<html>bad gateway</html>", "d1").message
    assert isinstance(error_for_status(404, None, b"{}", "d1"), errors.UpstreamBadRequest)


async def test_connections_are_pooled_across_calls_and_streams(sim: UpstreamSim):
    p = OpenAICompatProvider()
    dep = NATIVE.deployment(sim)
    try:
        for _ in range(3):
            await p.complete(call_for(dep))
            assert [c async for c in p.stream(call_for(dep))]
    finally:
        await p.aclose()
    ports = {e["client_port"] for e in sim.requests()}
    assert len(sim.requests()) == 6 and len(ports) == 1


@pytest.mark.parametrize("raw, ok", [
    # a server that omits [DONE] but finished properly: accepted
    ('data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
     'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n', True),
    # clean EOF with no finish_reason: the answer may be truncated
    ('data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n', False),
    # an error event mid-stream
    ('data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
     'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n', False),
])
async def test_odd_stream_endings(sim: UpstreamSim, raw: str, ok: bool):
    p = OpenAICompatProvider()
    dep = NATIVE.deployment(sim)
    sim.script(dep.wire_model, [{"raw_body": raw}])
    got = []
    try:
        if ok:
            got = [c async for c in p.stream(call_for(dep))]
            assert got[-1]["choices"][0]["finish_reason"] == "stop"
        else:
            with pytest.raises(errors.StreamInterrupted):
                async for c in p.stream(call_for(dep)):
                    got.append(c)
            assert got[0]["choices"][0]["delta"]["content"] == "hi"
    finally:
        await p.aclose()


@pytest.mark.parametrize("raw", ["not json at all", '{"object": "chat.completion"}'])
async def test_malformed_success_body_is_a_server_error(sim: UpstreamSim, raw: str):
    p = OpenAICompatProvider()
    dep = NATIVE.deployment(sim)
    sim.script(dep.wire_model, [{"raw_body": raw}])
    try:
        with pytest.raises(errors.UpstreamServerError) as ei:
            await p.complete(call_for(dep))
        assert ei.value.details["deployment"] == dep.deployment_id
    finally:
        await p.aclose()


def test_one_instance_serves_successive_event_loops(sim: UpstreamSim):
    """Some runtimes (and tests) run each request on a new loop: the pooled client follows."""
    p = OpenAICompatProvider()
    dep = NATIVE.deployment(sim)
    for _ in range(2):
        out = asyncio.run(p.complete(call_for(dep, "again")))
        assert out["choices"][0]["message"]["content"].startswith("echo: again")
    asyncio.run(p.aclose())


async def test_default_registry_builds_both_adapters_lazily(sim: UpstreamSim):
    reg = default_registry()
    native = reg.get("openai-compatible")
    assert isinstance(native, OpenAICompatProvider) and reg.get("openai-compatible") is native
    dep = NATIVE.deployment(sim)
    assert (await native.complete(call_for(dep)))["choices"]
    await reg.aclose()


def test_no_api_key_means_no_authorization_header(sim: UpstreamSim):
    p = OpenAICompatProvider()
    dep = NATIVE.deployment(sim)
    asyncio.run(p.complete(call_for(dep, api_key=None)))
    assert "authorization" not in sim.requests()[0]["headers"]


async def test_api_base_that_is_not_http_is_unavailable(sim: UpstreamSim):
    p = OpenAICompatProvider()
    dep = NATIVE.deployment(sim, api_base="ftp://example.invalid/v1")
    with pytest.raises(errors.UpstreamUnavailable):
        await p.complete(call_for(dep))
    await p.aclose()


ONE_CLIENT = r"""
import asyncio, json, sys
from tiergate.config.catalog import ModelSpec
from tiergate.providers.base import ProviderCall
from tiergate.providers.openai_compat import OpenAICompatProvider

async def main(base):
    dep = ModelSpec(name="m", id="dep-one-client", model="openai/one-client", adapter="openai-compatible", tier=1,
                    api_base=base)
    p = OpenAICompatProvider()
    chat = await p.complete(ProviderCall(dep, {"messages": [{"role": "user", "content": "hi"}]}, 5.0, "sk-t"))
    chunks = [c async for c in p.stream(ProviderCall(dep, {"messages": [{"role": "user", "content": "hi"}]}, 5.0, "sk-t"))]
    emb = await p.embed(ProviderCall(dep, {"input": ["a", "b"]}, 5.0, "sk-t", operation="embeddings"))
    msg = await p.native(ProviderCall(dep, {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}, 5.0,
                                      "sk-t", operation="anthropic"))
    events = [e async for e in p.native_stream(ProviderCall(dep, {"max_tokens": 8, "messages": [
        {"role": "user", "content": "hi"}]}, 5.0, "sk-t", operation="anthropic"))]
    await p.aclose()
    return {"chat": bool(chat["choices"]), "chunks": len(chunks), "vectors": len(emb["data"]),
            "message": msg["type"], "last_event": events[-1]["type"], "aiohttp": "aiohttp" in sys.modules}

print(json.dumps(asyncio.run(main(sys.argv[1]))))
"""


def test_every_native_call_goes_over_one_keep_alive_connection_without_aiohttp(sim: UpstreamSim):
    """Chat, a stream, embeddings and the Messages passthrough (plain and streamed) share one
    http1 pool: one connection for all five calls, and aiohttp is never imported (a fresh
    interpreter: the import is what is under test)."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", ONE_CLIENT, sim.openai_base], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"chat": True, "chunks": got["chunks"], "vectors": 2, "message": "message",
                   "last_event": "message_stop", "aiohttp": False} and got["chunks"] > 1
    seen = [e for e in sim.requests() if e["path"] in ("/v1/chat/completions", "/v1/embeddings", "/v1/messages")]
    assert len(seen) == 5 and len({e["client_port"] for e in seen}) == 1
