"""``POST /v1/responses`` (OpenAI Responses), ``GET`` / ``DELETE /v1/responses/{id}``.

Stateless, or with ``store: true`` (the default, as OpenAI's) the response and its
conversation are kept per API key (:class:`~tiergate.limits.stored_responses.ResponseStore`)
so ``previous_response_id`` continues it. Built-in tools that only OpenAI hosts (web
search, file search, code interpreter, ...) are refused with a 400 naming them unless the
chosen deployment speaks the Responses API natively (OpenAI's own), where the body passes
through unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tiergate.api.body import read_json, validate
from tiergate.api.deps import PrincipalDep, ServicesDep, authorization
from tiergate.api.door_schemas import ResponsesRequest
from tiergate.api.doors import chat_request, deferred
from tiergate.api.responses import JSONResponse
from tiergate.api.sse_response import EventStreamResponse
from tiergate.dialects import responses as dialect
from tiergate.errors import GatewayError, InvalidRequest, ServiceUnavailable
from tiergate.gateway import Deferred, Gateway, Streaming
from tiergate.limits.admission import Principal
from tiergate.limits.stored_responses import Kept, ResponseStore
from tiergate.providers.sse import format_event
from tiergate.request import GatewayRequest, NativeBody
from tiergate.services import Services

router = APIRouter()


def _store(services: Services) -> ResponseStore:
    if services.responses is None:
        raise ServiceUnavailable("This gateway keeps no Responses state (no store): send 'store': false "
                                 "and no 'previous_response_id'")
    return services.responses


async def create_response(request: Request) -> Response:
    services: Services = request.app.state.services
    principal = await services.admission.authenticate(authorization(request.headers))
    body = await read_json(request, services.settings.max_body_bytes)
    validate(ResponsesRequest, body)
    history: list[dict[str, Any]] = []
    hosted = dialect.hosted_tools(body)
    native_body = {k: v for k, v in body.items() if k not in ("model", "stream")}
    if body.get("previous_response_id"):
        prev = await _store(services).get(principal, body["previous_response_id"], param="previous_response_id")
        history = ResponseStore.history_of(prev)
        if hosted and not prev.get("native"):
            # The id is ours (a translated turn): OpenAI has never seen it. Its Responses API
            # is sent the conversation itself, as input items, instead of the id.
            native_body.pop("previous_response_id")
            turn_items = [{"role": "user", "content": body["input"]}] if isinstance(body["input"], str) \
                else list(body["input"])
            native_body["input"] = [*dialect.input_items(history), *turn_items]
    chat, turn = dialect.to_chat(body, history)
    native = NativeBody("responses", native_body) if hosted else None
    req = chat_request(services, request, chat, door="responses", native=native)
    gateway = Gateway(services)
    if hosted:
        _check_hosted(gateway, req, principal, hosted)
    result = await gateway.handle(req, principal)
    if isinstance(result, Deferred):
        return deferred(result)
    store = services.responses if body.get("store", True) else None
    if isinstance(result, Streaming):
        return EventStreamResponse(_events(result, body, turn, history, store, principal), result.headers)
    if result.dialect == "responses":
        resp = result.response  # OpenAI's own answer, hosted tools included
    else:
        resp = dialect.from_chat(result.response, body, dialect.new_id("resp"))
    cost = (result.response.get("usage") or {}).get("cost_usd")
    if cost is not None and resp.get("usage"):
        resp["usage"]["cost_usd"] = cost
    headers = result.headers
    if store is not None:
        kept = await store.put(principal, resp, dialect.history_after(turn, resp, history),
                               native=result.dialect == "responses")
        headers = {**headers, **_kept_headers(resp, kept)}
    return JSONResponse(resp, status_code=result.status, headers=headers)


def _kept_headers(resp: dict[str, Any], kept: Kept) -> dict[str, str]:
    """What the store could not keep (the 400 KB item limit): said in the response's own
    ``store`` field when nothing was stored, and in a header when history was dropped."""
    if not kept.stored:
        resp["store"] = False
    return {"x-tiergate-history-dropped": str(kept.dropped)} if kept.dropped else {}


def _check_hosted(gateway: Gateway, req: GatewayRequest, principal: Principal, hosted: list[str]) -> None:
    """Hosted tools run inside OpenAI's Responses API: the deployment chosen must speak it."""
    plan = gateway.plan(req, principal)
    if not plan.candidates or not plan.candidates[0].has("responses_api"):
        where = plan.candidates[0].name if plan.candidates else plan.requested
        raise InvalidRequest(f"Built-in tool(s) {', '.join(sorted(set(hosted)))} are hosted by OpenAI and need a "
                             f"deployment that is OpenAI's own Responses API; '{where}' is not (use function "
                             "tools, or a model served by OpenAI)", param="tools")


async def _events(s: Streaming, body: dict[str, Any], turn: list[dict[str, Any]], history: list[dict[str, Any]],
                  store: ResponseStore | None, principal: Principal) -> AsyncIterator[bytes]:
    """The Responses event stream, translated chunk by chunk; the response is stored before
    ``response.completed`` goes out (a follow-up may name it at once)."""
    if s.dialect == "responses":
        async for chunk in _native_events(s, turn, history, store, principal):
            yield chunk
        return
    tr = dialect.ResponseStream(dialect.new_id("resp"), body, model=s.meta.deployment.name)
    try:
        # The events one chunk makes go out in one write (response.created ... the first delta).
        pending = tr.start()
        async for chunk in s.chunks:
            events = pending + tr.events(chunk)
            pending = []
            if events:
                yield b"".join(format_event(name, data) for name, data in events)
        final = pending + tr.finish()
        if store is not None and tr.response is not None:
            _kept_headers(tr.response, await store.put(principal, tr.response,
                                                       dialect.history_after(turn, tr.response, history)))
        yield b"".join(format_event(name, data) for name, data in final)
    except GatewayError as e:
        name, data = tr.error(e.code or "stream_interrupted", f"upstream stream interrupted: {e.message}")
        yield format_event(name, data)
    finally:
        await s.chunks.aclose()  # type: ignore[attr-defined]


async def _native_events(s: Streaming, turn: list[dict[str, Any]], history: list[dict[str, Any]],
                         store: ResponseStore | None, principal: Principal) -> AsyncIterator[bytes]:
    """OpenAI's own events as they came; the final response is stored before it goes out."""
    try:
        async for ev in s.chunks:
            kind = ev.get("type") or "message"
            if kind == "response.completed" and store is not None and isinstance(ev.get("response"), dict):
                _kept_headers(ev["response"], await store.put(
                    principal, ev["response"], dialect.history_after(turn, ev["response"], history), native=True))
            yield format_event(kind, ev)
    except GatewayError as e:
        yield format_event("error", {"type": "error", "code": e.code, "message": f"upstream stream interrupted: "
                                     f"{e.message}", "param": None})
    finally:
        await s.chunks.aclose()  # type: ignore[attr-defined]


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, services: ServicesDep, principal: PrincipalDep) -> JSONResponse:
    rec = await _store(services).get(principal, response_id)
    return JSONResponse(rec["response"])


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, services: ServicesDep, principal: PrincipalDep) -> JSONResponse:
    await _store(services).delete(principal, response_id)
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})
