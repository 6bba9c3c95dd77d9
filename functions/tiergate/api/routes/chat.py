"""``POST /v1/chat/completions``: validate, hand to the gateway, render.

Mounted by ``create_app`` as a plain Starlette route (the hot path), not an APIRouter."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tiergate.api.body import read_json, validate
from tiergate.api.deps import authorization
from tiergate.api.doors import chat_request, openai_response
from tiergate.api.schemas import ChatRequest
from tiergate.gateway import Gateway
from tiergate.services import Services


async def chat_completions(request: Request) -> Response:
    # The hot path: services and the caller are looked up directly rather than through
    # FastAPI dependencies (their resolution costs more than the rest of the route).
    services: Services = request.app.state.services
    principal = await services.admission.authenticate(authorization(request.headers))
    body = await read_json(request, services.settings.max_body_bytes)
    validate(ChatRequest, body)
    req = chat_request(services, request, body)
    return openai_response(await Gateway(services).handle(req, principal))


#: The same path as an APIRouter route, registered *after* the plain route above: Starlette
#: matches the first, so this one is never called; it only puts the door and its body
#: schema into ``/openapi.json`` and ``/docs``.
docs_router = APIRouter()


@docs_router.post("/v1/chat/completions", summary="OpenAI chat completions (tools, JSON, streaming)",
                  response_description="chat.completion, or text/event-stream chunks when stream is true")
async def _documented(body: ChatRequest) -> dict[str, Any]:  # pragma: no cover - shadowed by the hot path
    raise NotImplementedError
