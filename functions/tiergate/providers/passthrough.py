"""Native passthrough: a door's own body sent unchanged to a deployment that speaks its API.

Anthropic Messages (``POST .../v1/messages``, ``.../v1/messages/count_tokens``) and OpenAI
Responses (``POST .../responses``), over the adapter's :mod:`~tiergate.providers.http1`
keep-alive pool, bodies as orjson bytes, streams parsed incrementally. Only ``model`` (and
``stream``) are set; everything else -- thinking blocks, ``cache_control``, beta fields,
hosted tools -- goes as the client sent it, with the client's ``anthropic-version`` /
``anthropic-beta`` headers.

Why not LiteLLM's own Messages passthrough (``litellm.anthropic_messages``)? Its streaming
path imports ``litellm.proxy`` (measured with litellm 1.106.2: the stream iterator imports
``litellm.proxy.pass_through_endpoints``), which this project never imports, and its
non-streaming path rewrites the messages (an "empty content block sanitizer"); a lossless
passthrough is a plain POST. Both adapters that reach such deployments (``litellm`` for
``anthropic/...`` and ``openai/...`` models, ``openai-compatible`` endpoints that declare
``messages_api`` / ``responses_api``) delegate here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from tiergate import errors
from tiergate.config.catalog import ModelSpec
from tiergate.providers import error_mapping, http1
from tiergate.providers.base import ProviderCall
from tiergate.providers.error_mapping import error_for_status, interrupted
from tiergate.providers.sse import DONE_DATA, SSEDecoder

ANTHROPIC_BASE = "https://api.anthropic.com"
OPENAI_BASE = "https://api.openai.com/v1"
ANTHROPIC_VERSION = "2023-06-01"
CONNECT_TIMEOUT_CAP_S = 5.0

#: Transport failures where nothing reached the upstream (safe to retry anywhere).
UNREACHABLE: tuple[type[BaseException], ...] = (http1.ConnectError,)
#: What a call over http1 raises when it fails in transport (a deadline passing included).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (http1.TransportError, TimeoutError)
#: ... and while a stream's body is read (an event that is not JSON too).
STREAM_ERRORS: tuple[type[BaseException], ...] = (*TRANSPORT_ERRORS, orjson.JSONDecodeError)


def anthropic_url(api_base: str | None, suffix: str = "/messages") -> str:
    """``.../v1/messages`` from an Anthropic-style root (LiteLLM's convention) or a ``.../v1`` base."""
    base = (api_base or ANTHROPIC_BASE).rstrip("/")
    base = base.removesuffix("/messages")
    return (base if base.endswith("/v1") else base + "/v1") + suffix


def transport_error(exc: BaseException, dep: str) -> errors.UpstreamError:
    """The gateway's error for a transport failure of an http1 call before any chunk."""
    return error_mapping.error_for_transport(exc, dep, unreachable=UNREACHABLE, timeouts=(TimeoutError,))


async def fetch(client: http1.Client, url: str, body: bytes, headers: dict[str, str], timeout_s: float,
                dep: str) -> tuple[int, dict[str, str], bytes]:
    """POST and read the whole answer within ``timeout_s``; an error status raises the
    gateway's error for it, a transport failure :func:`transport_error`'s."""
    try:
        status, head, raw = await client.fetch(url, body, headers, timeout=timeout_s,
                                               connect_timeout=min(timeout_s, CONNECT_TIMEOUT_CAP_S))
    except TRANSPORT_ERRORS as e:
        raise transport_error(e, dep) from e
    if status >= 400:
        raise error_for_status(status, head, raw, dep)
    return status, head, raw


async def open_stream(client: http1.Client, url: str, body: bytes, headers: dict[str, str], timeout_s: float,
                      dep: str) -> http1.Response:
    """Send a streamed request and return the response once its status says a stream
    follows (the caller iterates its body and releases it): its head within
    ``timeout_s``, then at most ``timeout_s`` between two reads. An error status raises the
    gateway's error for it (body read, connection released); a transport failure or the
    deadline passing before the head raises :func:`transport_error`'s."""
    try:
        async with asyncio.timeout(timeout_s):
            resp = await client.post(url, body, headers, connect_timeout=min(timeout_s, CONNECT_TIMEOUT_CAP_S),
                                     read_timeout=timeout_s)
            if resp.status >= 400:
                try:
                    raw = await resp.read()
                finally:
                    resp.release()
                raise error_for_status(resp.status, resp.headers, raw, dep)
    except TRANSPORT_ERRORS as e:
        raise transport_error(e, dep) from e
    return resp


class NativeWire:
    """Sends native bodies; ``client`` gives the adapter's (loop-bound, pooled) http1 client."""

    def __init__(self, client: Callable[[], http1.Client], *, bearer_auth: bool,
                 upstream_model: Callable[[ModelSpec], str]) -> None:
        self._client = client
        #: Anthropic's own API takes ``x-api-key``; a gateway speaking Messages (another
        #: tiergate) takes a bearer token.
        self._bearer = bearer_auth
        self._model = upstream_model

    # --- plumbing -------------------------------------------------------------------------

    def _request(self, call: ProviderCall, *, stream: bool, suffix: str = "/messages") -> tuple[str, bytes, dict]:
        dep = call.deployment
        body = dict(call.body)
        body["model"] = self._model(dep)
        if stream:
            body["stream"] = True
        headers = {"content-type": "application/json", "accept-encoding": "identity",
                   "accept": "text/event-stream" if stream else "application/json"}
        if call.operation == "anthropic":
            url = anthropic_url(dep.api_base, suffix)
            headers["anthropic-version"] = ANTHROPIC_VERSION
            if call.api_key:
                headers["authorization" if self._bearer else "x-api-key"] = (
                    "Bearer " + call.api_key if self._bearer else call.api_key)
        else:  # "responses"
            url = (dep.api_base or OPENAI_BASE).rstrip("/") + "/responses"
            if call.api_key:
                headers["authorization"] = "Bearer " + call.api_key
        extra = {**dep.extra_headers, **call.extra_headers}
        if extra:
            names = {k.lower() for k in extra}
            headers = {k: v for k, v in headers.items() if k not in names} | dict(extra)
        return url, orjson.dumps(body), headers

    async def _post(self, call: ProviderCall, suffix: str = "/messages") -> dict[str, Any]:
        dep = call.deployment.deployment_id
        url, content, headers = self._request(call, stream=False, suffix=suffix)
        status, head, raw = await fetch(self._client(), url, content, headers, call.timeout_s, dep)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise errors.UpstreamServerError(f"{dep}: upstream sent a body that is not JSON", deployment=dep,
                                             upstream_status=status) from None
        if not isinstance(data, dict) or data.get("type") == "error":
            raise error_for_status(502, head, data, dep)
        return data

    # --- the SpeaksNative contract ------------------------------------------------------------

    async def native(self, call: ProviderCall) -> dict[str, Any]:
        return await self._post(call)

    async def count_tokens(self, call: ProviderCall) -> dict[str, Any]:
        """Anthropic's own count (``/v1/messages/count_tokens``): the body without ``max_tokens``."""
        body = {k: v for k, v in call.body.items() if k not in ("max_tokens", "stream")}
        return await self._post(ProviderCall(call.deployment, body, call.timeout_s, call.api_key,
                                             call.extra_headers, call.operation), "/messages/count_tokens")

    async def native_stream(self, call: ProviderCall) -> AsyncIterator[dict[str, Any]]:
        dep = call.deployment.deployment_id
        url, content, headers = self._request(call, stream=True)
        resp = await open_stream(self._client(), url, content, headers, call.timeout_s, dep)
        try:
            async for event in _events(resp.iter_any(), dep):
                yield event
        finally:
            resp.release()


class PassesThrough:
    """Mixin for an adapter: the :class:`~tiergate.providers.base.SpeaksNative` methods (and
    Anthropic token counting), delegated to its :class:`NativeWire` ``_wire``."""

    _wire: NativeWire

    async def native(self, call: ProviderCall) -> dict[str, Any]:
        return await self._wire.native(call)

    def native_stream(self, call: ProviderCall) -> AsyncIterator[dict[str, Any]]:
        return self._wire.native_stream(call)

    async def count_tokens(self, call: ProviderCall) -> dict[str, Any]:
        return await self._wire.count_tokens(call)


#: The events that end a complete native stream; a stream that stops before one was cut off.
_FINAL = frozenset({"message_stop", "response.completed", "response.incomplete", "response.failed"})


async def _events(raw: AsyncIterator[bytes], dep: str) -> AsyncIterator[dict[str, Any]]:
    """Event dicts from a native SSE body; an ``error`` event raises (interrupted after the first)."""
    decoder = SSEDecoder()
    n = 0
    finished = False
    try:
        async for data in raw:
            for _name, payload in decoder.feed(data):
                if payload == DONE_DATA:
                    continue
                obj = orjson.loads(payload)
                if not isinstance(obj, dict):
                    raise orjson.JSONDecodeError("event is not a JSON object", "", 0)
                if obj.get("type") == "error":
                    err = error_for_status(502, None, obj, dep)
                    raise interrupted(dep, err.message, n) if n else err
                n += 1
                finished = finished or obj.get("type") in _FINAL
                yield obj
    except STREAM_ERRORS as e:
        if n:
            raise interrupted(dep, e, n) from e
        if isinstance(e, orjson.JSONDecodeError):
            raise errors.UpstreamServerError(f"{dep}: upstream sent an SSE event that is not JSON",
                                             deployment=dep) from None
        raise transport_error(e, dep) from e
    if n == 0:
        raise errors.UpstreamServerError(f"{dep}: upstream stream ended without any event", deployment=dep)
    if not finished:
        raise interrupted(dep, "the stream ended before its final event", n)
