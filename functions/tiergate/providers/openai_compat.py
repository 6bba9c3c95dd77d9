"""The native ``openai-compatible`` adapter: one pooled HTTP connection pool, bodies forwarded as is.

It talks to any endpoint that speaks OpenAI chat completions (vLLM, llama.cpp server,
Groq, Together, OpenRouter, OpenAI itself, and another tiergate). This is the hot path:
no pydantic, no per-call client, orjson both ways, SSE parsed incrementally on bytes.

Timeouts: connecting is bounded by ``min(timeout_s, 5)``; a non-streaming call must
finish within ``timeout_s`` in total; a streaming call must deliver its response headers
within ``timeout_s`` and then at most ``timeout_s`` may pass between two reads (a stream
may run longer than ``timeout_s`` in total as long as it keeps flowing).

The status and transport translation here (:func:`error_for_status`,
:func:`parse_retry_after`) is shared with the LiteLLM adapter.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpcore
import orjson

from tiergate import errors
from tiergate.providers.base import ProviderCall
from tiergate.providers.sse import DONE_DATA, SSEDecoder

DEFAULT_API_BASE = "https://api.openai.com/v1"
CONNECT_TIMEOUT_CAP_S = 5.0
#: After ``[DONE]``, how long we wait for the end of the body so the connection can go
#: back to the pool (the terminating chunk normally arrives with ``[DONE]``).
DRAIN_TIMEOUT_S = 1.0
_MAX_ERROR_TEXT = 500
USER_AGENT = b"tiergate"


# --- error translation (shared with the LiteLLM adapter) ------------------------------


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` (seconds or HTTP-date)."""
    ms = _header(headers, "retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = _header(headers, "retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def upstream_error_fields(body: bytes | str | Any) -> tuple[str, str | None, str | None]:
    """``(message, type, code)`` from an OpenAI or Anthropic error body, else its text."""
    data = body
    if isinstance(body, bytes | str):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return text.strip()[:_MAX_ERROR_TEXT] or "(empty body)", None, None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or data.get("detail")
            code = err.get("code")
            return (str(msg)[:_MAX_ERROR_TEXT] if msg else orjson.dumps(data)[:_MAX_ERROR_TEXT].decode(),
                    err.get("type") if isinstance(err.get("type"), str) else None,
                    str(code) if code is not None else None)
        if isinstance(err, str):
            return err[:_MAX_ERROR_TEXT], None, None
    return str(data)[:_MAX_ERROR_TEXT], None, None


def error_for_status(status: int, headers: Mapping[str, str] | None, body: Any,
                     deployment: str) -> errors.UpstreamError:
    """The gateway error for an upstream HTTP error status (by status, never by text)."""
    message, etype, code = upstream_error_fields(body)
    details: dict[str, Any] = {"deployment": deployment, "upstream_status": status}
    if etype:
        details["upstream_type"] = etype
    if code:
        details["upstream_code"] = code
    text = f"{deployment}: upstream returned {status}: {message}"
    if status == 429:
        return errors.UpstreamRateLimited(text, retry_after=parse_retry_after(headers), **details)
    if status in (401, 403):
        return errors.UpstreamAuthFailed(text, **details)
    if status in (408, 504):
        return errors.UpstreamTimeout(text, **details)
    if status >= 500:
        retry_after = parse_retry_after(headers)
        if retry_after is not None:
            details["retry_after"] = retry_after
        return errors.UpstreamServerError(text, **details)
    if code == "context_length_exceeded":
        return errors.UpstreamBadRequest(text, code="context_length_exceeded", **details)
    return errors.UpstreamBadRequest(text, **details)


# Transport failures where nothing reached the upstream (safe to retry anywhere).
UNREACHABLE: tuple[type[BaseException], ...] = (httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.PoolTimeout,
                                                httpcore.UnsupportedProtocol, httpcore.ProxyError)
TIMEOUTS: tuple[type[BaseException], ...] = (httpcore.TimeoutException, TimeoutError)


def error_for_transport(exc: BaseException, deployment: str, *,
                        unreachable: tuple[type[BaseException], ...] = UNREACHABLE,
                        timeouts: tuple[type[BaseException], ...] = TIMEOUTS) -> errors.UpstreamError:
    """The gateway error for a transport/asyncio failure before any chunk was delivered.

    ``unreachable``/``timeouts`` are the exception types of the HTTP stack in use (httpcore
    here; the LiteLLM adapter passes httpx's)."""
    details = {"deployment": deployment, "cause": type(exc).__name__}
    if isinstance(exc, unreachable):
        return errors.UpstreamUnavailable(f"{deployment}: cannot reach upstream ({type(exc).__name__})", **details)
    if isinstance(exc, timeouts):
        return errors.UpstreamTimeout(f"{deployment}: upstream timed out", **details)
    return errors.UpstreamServerError(
        f"{deployment}: upstream connection failed ({type(exc).__name__}: {exc})", **details)


def interrupted(deployment: str, cause: BaseException | str, chunks: int) -> errors.StreamInterrupted:
    reason = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
    return errors.StreamInterrupted(
        f"{deployment}: upstream stream broke off after {chunks} chunk(s): {reason}",
        deployment=deployment, chunks=chunks)


# --- the provider --------------------------------------------------------------------


class OpenAICompatProvider:
    """Provider over one pooled :class:`httpcore.AsyncConnectionPool` (HTTP/1.1 keep-alive).

    httpcore is the transport under httpx; using it directly saves about a quarter of the
    client-side CPU per call (measured: ~0.6 ms against ~0.85 ms through ``httpx.AsyncClient``).
    We need none of httpx's extras here: no redirects, cookies, proxies from the
    environment or content decoding (we ask for ``identity``).

    The pool is bound to the event loop that first uses it; if a later call runs on a
    different loop (tests, some serverless runtimes) a fresh pool is made for it.
    """

    def __init__(self, *, max_connections: int = 1000, max_keepalive_connections: int = 200,
                 keepalive_expiry: float = 30.0) -> None:
        self._pool_args = {"max_connections": max_connections,
                           "max_keepalive_connections": max_keepalive_connections,
                           "keepalive_expiry": keepalive_expiry}
        self._pool: httpcore.AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._urls: dict[str | None, tuple[httpcore.URL, bytes]] = {}

    def _http(self) -> httpcore.AsyncConnectionPool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._loop is not loop:
            self._pool = httpcore.AsyncConnectionPool(http1=True, http2=False, **self._pool_args)
            self._loop = loop
        return self._pool

    def _url(self, api_base: str | None) -> tuple[httpcore.URL, bytes]:
        hit = self._urls.get(api_base)
        if hit is None:
            full = (api_base or DEFAULT_API_BASE).rstrip("/") + "/chat/completions"
            parts = urllib.parse.urlsplit(full)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise errors.UpstreamUnavailable(f"api_base {api_base!r} is not an http(s) URL", api_base=api_base)
            host = parts.hostname.encode("idna")
            netloc = host if parts.port is None else host + b":" + str(parts.port).encode()
            target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
            url = httpcore.URL(scheme=parts.scheme.encode(), host=host, port=parts.port, target=target.encode())
            hit = self._urls[api_base] = (url, netloc)
        return hit

    def _request(self, call: ProviderCall, stream: bool) -> httpcore.Request:
        dep = call.deployment
        body = dict(call.body)
        body["model"] = dep.wire_model
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        content = orjson.dumps(body)
        url, netloc = self._url(dep.api_base)
        headers = [(b"host", netloc), (b"content-type", b"application/json"),
                   (b"content-length", str(len(content)).encode()),
                   (b"accept", b"text/event-stream" if stream else b"application/json"),
                   (b"accept-encoding", b"identity"), (b"user-agent", USER_AGENT)]
        if call.api_key:
            headers.append((b"authorization", b"Bearer " + call.api_key.encode()))
        if dep.extra_headers or call.extra_headers:
            extra = {**dep.extra_headers, **call.extra_headers}
            names = {k.lower().encode() for k in extra}
            headers = [h for h in headers if h[0] not in names]
            headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        t = call.timeout_s
        timeout = {"connect": min(t, CONNECT_TIMEOUT_CAP_S), "read": t, "write": t, "pool": t}
        return httpcore.Request(b"POST", url, headers=headers, content=content, extensions={"timeout": timeout})

    async def complete(self, call: ProviderCall) -> dict[str, Any]:
        pool = self._http()
        dep_id = call.deployment.deployment_id
        request = self._request(call, False)
        try:
            async with asyncio.timeout(call.timeout_s):
                resp = await pool.handle_async_request(request)
                try:
                    content = await resp.aread()
                finally:
                    await resp.aclose()
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
                httpcore.UnsupportedProtocol, httpcore.ProxyError, TimeoutError) as e:
            raise error_for_transport(e, dep_id) from e
        if resp.status >= 400:
            raise error_for_status(resp.status, _headers(resp), content, dep_id)
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise errors.UpstreamServerError(f"{dep_id}: upstream sent a body that is not JSON",
                                             deployment=dep_id, upstream_status=resp.status) from None
        if type(data) is not dict or "choices" not in data:
            if isinstance(data, dict) and "error" in data:
                raise error_for_status(502, _headers(resp), data, dep_id)
            raise errors.UpstreamServerError(f"{dep_id}: upstream answer has no 'choices'",
                                             deployment=dep_id, upstream_status=resp.status)
        return data

    async def stream(self, call: ProviderCall) -> AsyncIterator[dict[str, Any]]:
        pool = self._http()
        dep_id = call.deployment.deployment_id
        request = self._request(call, True)
        try:
            async with asyncio.timeout(call.timeout_s):
                resp = await pool.handle_async_request(request)
                if resp.status >= 400:
                    try:
                        content = await resp.aread()
                    finally:
                        await resp.aclose()
                    raise error_for_status(resp.status, _headers(resp), content, dep_id)
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
                httpcore.UnsupportedProtocol, httpcore.ProxyError, TimeoutError) as e:
            raise error_for_transport(e, dep_id) from e
        try:
            async for chunk in _events(resp.aiter_stream(), dep_id):
                yield chunk
        finally:
            await resp.aclose()

    async def aclose(self) -> None:
        pool, loop = self._pool, self._loop
        self._pool = self._loop = None
        # A pool's sockets belong to the loop that opened them: close them only there
        # (a pool from a finished loop is simply dropped; its sockets close with it).
        if pool is not None and loop is asyncio.get_running_loop():
            await pool.aclose()


def _headers(resp: httpcore.Response) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in resp.headers}


_STREAM_ERRORS = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError, TimeoutError,
                  orjson.JSONDecodeError)


async def _events(raw: AsyncIterator[bytes], dep_id: str) -> AsyncIterator[dict[str, Any]]:
    """Chunks from an OpenAI SSE body; see the module docstring for how it may end."""
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
                yield obj
    except _STREAM_ERRORS as e:
        if n:
            raise interrupted(dep_id, e, n) from e
        if isinstance(e, orjson.JSONDecodeError):
            raise errors.UpstreamServerError(f"{dep_id}: upstream sent an SSE event that is not JSON",
                                             deployment=dep_id) from None
        raise error_for_transport(e, dep_id) from e
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


async def _drain(raw: AsyncIterator[bytes]) -> None:
    """Read to the end of the body so the connection returns to the pool."""
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            async for _ in raw:
                pass
    except _STREAM_ERRORS:
        pass  # the answer is complete; the connection is simply not reused
