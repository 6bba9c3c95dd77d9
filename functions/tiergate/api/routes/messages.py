"""``POST /v1/messages`` (Anthropic Messages) and ``POST /v1/messages/count_tokens``.

The door keeps the Messages body for deployments that speak it natively and translates it
to chat for the others; the answer comes back in Anthropic's shape either way (a native
one as the deployment sent it). Errors are Anthropic-shaped (:mod:`tiergate.api.errors`
decides by path). Plain Starlette routes, like the chat door (the hot path)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from tiergate.api.body import read_json, validate
from tiergate.api.deps import authorization
from tiergate.api.door_schemas import CountTokensRequest, MessagesRequest
from tiergate.api.doors import chat_request, deferred
from tiergate.api.responses import JSONResponse
from tiergate.api.sse_response import EventStreamResponse
from tiergate.dialects import anthropic
from tiergate.errors import GatewayError
from tiergate.gateway import Completed, Deferred, Gateway, Streaming
from tiergate.providers.sse import format_event
from tiergate.request import NativeBody
from tiergate.services import Services


def _native(request: Request, body: dict[str, Any]) -> NativeBody:
    headers = {h: request.headers[h] for h in anthropic.FORWARDED_HEADERS if h in request.headers}
    return NativeBody("anthropic", anthropic.native_body(body), headers)


async def messages(request: Request) -> Response:
    services: Services = request.app.state.services
    principal = await services.admission.authenticate(authorization(request.headers))
    body = await read_json(request, services.settings.max_body_bytes)
    validate(MessagesRequest, body)
    req = chat_request(services, request, anthropic.to_chat(body), door="messages", native=_native(request, body))
    result = await Gateway(services).handle(req, principal)
    if isinstance(result, Deferred):
        return deferred(result)
    if isinstance(result, Streaming):
        return EventStreamResponse(_events(result, req.needs.prompt_tokens), result.headers)
    return JSONResponse(_message(result), status_code=result.status, headers=result.headers)


def _message(done: Completed) -> dict[str, Any]:
    if done.dialect == "anthropic":
        return done.response  # a native deployment's own answer
    msg = anthropic.from_chat(done.response)
    cost = (done.response.get("usage") or {}).get("cost_usd")
    if cost is not None:
        msg["usage"]["cost_usd"] = cost
    return msg


async def _events(s: Streaming, prompt_estimate: int) -> AsyncIterator[bytes]:
    """Anthropic's event stream: a native deployment's events as they came, or the chat
    chunks translated one by one; a mid-stream failure ends with an ``error`` event."""
    try:
        if s.dialect == "anthropic":
            async for ev in s.chunks:
                yield format_event(ev.get("type") or "message", ev)
            return
        tr = anthropic.MessageStream(input_tokens=prompt_estimate, model=s.meta.deployment.name)
        async for chunk in s.chunks:
            # The events one chunk makes go out in one write (message_start ... the first delta).
            events = tr.events(chunk)
            if events:
                yield b"".join(format_event(name, data) for name, data in events)
        yield b"".join(format_event(name, data) for name, data in tr.finish())
    except GatewayError as e:
        name, data = anthropic.error_event(e.status, f"upstream stream interrupted: {e.message}")
        yield format_event(name, data)
    finally:
        await s.chunks.aclose()  # type: ignore[attr-defined]


async def count_tokens(request: Request) -> Response:
    """The prompt's input tokens: counted by the deployment when it speaks Messages
    natively, else the gateway's own estimate of the translated prompt. Rate-limited
    (the key's RPM) and recorded, never billed (:meth:`Gateway.count_tokens`)."""
    services: Services = request.app.state.services
    principal = await services.admission.authenticate(authorization(request.headers))
    body = await read_json(request, services.settings.max_body_bytes)
    validate(CountTokensRequest, body)
    chat = anthropic.to_chat({**body, "max_tokens": body.get("max_tokens") or 1})
    req = chat_request(services, request, chat, door="messages", native=_native(request, body))
    done = await Gateway(services).count_tokens(req, principal, lambda: anthropic.count_tokens_estimate(chat))
    return JSONResponse(done.response, headers=done.headers)
