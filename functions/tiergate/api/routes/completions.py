"""``POST /v1/completions``: the legacy OpenAI completions door (one prompt, as a chat turn)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from tiergate.api.body import read_json, validate
from tiergate.api.deps import authorization
from tiergate.api.door_schemas import CompletionsRequest
from tiergate.api.doors import chat_request, deferred, openai_events
from tiergate.api.responses import JSONResponse
from tiergate.api.sse_response import EventStreamResponse
from tiergate.dialects import completions
from tiergate.gateway import Deferred, Gateway, Streaming
from tiergate.services import Services


async def create_completion(request: Request) -> Response:
    services: Services = request.app.state.services
    principal = await services.admission.authenticate(authorization(request.headers))
    body = await read_json(request, services.settings.max_body_bytes)
    validate(CompletionsRequest, body)
    req = chat_request(services, request, completions.to_chat(body), door="completions")
    result = await Gateway(services).handle(req, principal)
    if isinstance(result, Deferred):
        return deferred(result)
    if isinstance(result, Streaming):
        return EventStreamResponse(openai_events(result, completions.chunk_from_chat), result.headers)
    return JSONResponse(completions.from_chat(result.response, body), status_code=result.status,
                        headers=result.headers)
