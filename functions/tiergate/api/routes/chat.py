"""``POST /v1/chat/completions``: validate, hand to the gateway, render.

Mounted by ``create_app`` as a plain Starlette route (the hot path), not an APIRouter."""

from __future__ import annotations

from fastapi import Request
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
