"""The native ``openai-compatible`` adapter: one pooled HTTP connection pool, bodies forwarded as is.

It talks to any endpoint that speaks OpenAI chat completions (vLLM, llama.cpp server,
Groq, Together, OpenRouter, OpenAI itself, and another tiergate). This is the hot path:
no pydantic, no per-call client, orjson both ways, SSE parsed incrementally on bytes.

Timeouts: connecting is bounded by ``min(timeout_s, 5)``; a non-streaming call must
finish within ``timeout_s`` in total; a streaming call must deliver its response headers
within ``timeout_s`` and then at most ``timeout_s`` may pass between two reads (a stream
may run longer than ``timeout_s`` in total as long as it keeps flowing).

Failures are translated by :mod:`tiergate.providers.error_mapping` (shared with the LiteLLM
adapter), given :mod:`tiergate.providers.http1`'s transport exception types.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import orjson

from tiergate import errors
from tiergate.providers import http1
from tiergate.providers.base import ProviderCall, WireChunk
from tiergate.providers.error_mapping import error_for_status, interrupted
from tiergate.providers.passthrough import (
    STREAM_ERRORS,
    NativeWire,
    PassesThrough,
    fetch,
    open_stream,
    transport_error,
)
from tiergate.providers.sse import DONE_DATA, SSEDecoder

DEFAULT_API_BASE = "https://api.openai.com/v1"
#: After ``[DONE]``, how long we wait for the end of the body so the connection can go
#: back to the pool (the terminating chunk normally arrives with ``[DONE]``).
DRAIN_TIMEOUT_S = 1.0
USER_AGENT = "tiergate"


# --- the provider --------------------------------------------------------------------


class OpenAICompatProvider(PassesThrough):
    """Every call (chat, embeddings, native passthrough) over one
    :mod:`tiergate.providers.http1` keep-alive pool, bound to the event loop that first uses
    it (a call on a different loop -- tests, some serverless runtimes -- gets a fresh one).

    Client CPU per pooled POST, measured (16 in flight, loopback upstream): httpx.AsyncClient
    ~0.9 ms, aiohttp ~75 us, http1 ~23 us: the calls need none of a richer client's extras (no
    redirects, cookies, proxies from the environment or content decoding).
    """

    def __init__(self, *, max_connections: int = 1000, keepalive_expiry: float = 30.0) -> None:
        self._client = http1.LoopClient(keepalive_s=keepalive_expiry, max_connections=max_connections)
        self._urls: dict[str | None, str] = {}
        # Endpoints declaring messages_api/responses_api (another tiergate, say) take a bearer key.
        self._wire = NativeWire(self._client, bearer_auth=True, upstream_model=lambda d: d.wire_model)

    def _url(self, api_base: str | None, path: str = "/chat/completions") -> str:
        key = api_base if path == "/chat/completions" else f"{api_base}{path}"
        hit = self._urls.get(key)
        if hit is None:
            full = (api_base or DEFAULT_API_BASE).rstrip("/") + path
            parts = urllib.parse.urlsplit(full)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise errors.UpstreamUnavailable(f"api_base {api_base!r} is not an http(s) URL", api_base=api_base)
            hit = self._urls[key] = full
        return hit

    def _request(self, call: ProviderCall, stream: bool) -> tuple[str, bytes, dict[str, str]]:
        dep = call.deployment
        body = dict(call.body)
        for name in dep.drop_params or ():  # what this endpoint refuses (top_k on OpenAI's own API)
            body.pop(name, None)
        body["model"] = dep.wire_model
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        headers = {"content-type": "application/json", "accept-encoding": "identity", "user-agent": USER_AGENT,
                   "accept": "text/event-stream" if stream else "application/json"}
        if call.api_key:
            headers["authorization"] = "Bearer " + call.api_key
        if call.request_id:
            headers["x-request-id"] = call.request_id
        if dep.extra_headers or call.extra_headers:
            extra = {**dep.extra_headers, **call.extra_headers}
            names = {k.lower() for k in extra}
            headers = {k: v for k, v in headers.items() if k not in names} | dict(extra)
        return self._url(dep.api_base), orjson.dumps(body), headers

    async def complete(self, call: ProviderCall) -> dict[str, Any]:
        dep_id = call.deployment.deployment_id
        url, content, headers = self._request(call, False)
        status, head, raw = await fetch(self._client(), url, content, headers, call.timeout_s, dep_id)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise errors.UpstreamServerError(f"{dep_id}: upstream sent a body that is not JSON",
                                             deployment=dep_id, upstream_status=status) from None
        if type(data) is not dict or "choices" not in data:
            if isinstance(data, dict) and "error" in data:
                raise error_for_status(502, head, data, dep_id)
            raise errors.UpstreamServerError(f"{dep_id}: upstream answer has no 'choices'",
                                             deployment=dep_id, upstream_status=status)
        return data

    def stream(self, call: ProviderCall) -> AsyncIterator[dict[str, Any]]:
        return _events(self._client(), call, *self._request(call, True))

    # --- optional parts of the contract: embeddings, native passthrough ------------------

    async def embed(self, call: ProviderCall) -> dict[str, Any]:
        """``POST {api_base}/embeddings`` (floats asked for; the door encodes base64)."""
        dep = call.deployment
        body = {**call.body, "model": dep.wire_model, "encoding_format": "float"}
        headers = {"content-type": "application/json", "accept-encoding": "identity", "user-agent": USER_AGENT,
                   **({"authorization": "Bearer " + call.api_key} if call.api_key else {}),
                   **dep.extra_headers, **call.extra_headers}
        status, _head, raw = await fetch(self._client(), self._url(dep.api_base, "/embeddings"), orjson.dumps(body),
                                         headers, call.timeout_s, dep.deployment_id)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if type(data) is not dict or not isinstance(data.get("data"), list):
            raise errors.UpstreamServerError(f"{dep.deployment_id}: upstream embeddings answer has no 'data'",
                                             deployment=dep.deployment_id, upstream_status=status)
        return data

    async def aclose(self) -> None:
        self._client.close()


async def _events(client: http1.Client, call: ProviderCall, url: str, content: bytes, headers: dict[str, str]
                  ) -> AsyncIterator[dict[str, Any]]:
    """Chunks of a streamed call, once its status says a stream follows (the head within
    ``timeout_s``, then at most ``timeout_s`` between two reads; an error status raises the
    gateway's error for it, its body read); see the module docstring for how it may end.

    One generator over the response's body: every chunk passes through each layer of
    generators between the socket and the client, and each layer costs CPU per chunk."""
    dep_id = call.deployment.deployment_id
    resp = await open_stream(client, url, content, headers, call.timeout_s, dep_id)
    raw = resp.iter_any()
    try:
        decoder = SSEDecoder()
        loads = orjson.loads
        n = 0
        finished = False
        try:
            async for data in raw:
                for _event, payload in decoder.feed(data):
                    if payload == DONE_DATA:
                        await _drain(raw)
                        return
                    obj = loads(payload)
                    if type(obj) is not dict:
                        raise orjson.JSONDecodeError("event is not a JSON object", "", 0)
                    if "error" in obj and "choices" not in obj:
                        err = error_for_status(502, None, obj, dep_id)
                        raise interrupted(dep_id, err.message, n) if n else err
                    choices = obj.get("choices")
                    if choices and choices[0].get("finish_reason"):
                        finished = True
                    n += 1
                    chunk = WireChunk(obj)
                    # A one-line payload is resent as it came (several data: lines are re-encoded).
                    chunk.wire = b"data: " + payload + b"\n\n" if payload.find(b"\n") < 0 else None
                    yield chunk
        except STREAM_ERRORS as e:
            if n:
                raise interrupted(dep_id, e, n) from e
            if isinstance(e, orjson.JSONDecodeError):
                raise errors.UpstreamServerError(f"{dep_id}: upstream sent an SSE event that is not JSON",
                                                 deployment=dep_id) from None
            raise transport_error(e, dep_id) from e
        for _event, payload in decoder.flush():
            if payload != DONE_DATA:
                n += 1
                yield loads(payload)
        # A clean end without [DONE] is accepted from servers that omit it, but only after
        # a finish_reason: otherwise the answer may be silently truncated.
        if not finished:
            if n:
                raise interrupted(dep_id, "the stream ended without a finish_reason", n)
            raise errors.UpstreamServerError(f"{dep_id}: upstream stream ended without any event", deployment=dep_id)
    finally:
        # The body's connection goes back to the pool (read to its end) or is closed, now.
        try:
            await raw.aclose()
        finally:
            resp.release()


async def _drain(raw: AsyncIterator[bytes]) -> None:
    """Read to the end of the body so the connection returns to the pool."""
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            async for _ in raw:
                pass
    except STREAM_ERRORS:
        pass  # the answer is complete; the connection is simply not reused
