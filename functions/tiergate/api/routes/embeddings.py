"""``POST /v1/embeddings``: routed to catalog models with the ``embeddings`` capability,
admitted, billed and recorded like chat (input tokens at the model's input price)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from tiergate.api.body import read_json, validate
from tiergate.api.deps import authorization
from tiergate.api.door_schemas import EmbeddingsRequest
from tiergate.api.doors import deferred
from tiergate.api.responses import JSONResponse
from tiergate.dialects import embeddings
from tiergate.gateway import Deferred, Gateway, Streaming
from tiergate.request import GatewayRequest, hints_of, trace_of
from tiergate.services import Services


async def create_embeddings(request: Request) -> Response:
    services: Services = request.app.state.services
    principal = await services.admission.authenticate(authorization(request.headers))
    body = await read_json(request, services.settings.max_body_bytes)
    validate(EmbeddingsRequest, body)
    # Adapters always return floats; the door encodes base64 itself (one shape below it).
    upstream: dict[str, Any] = {k: v for k, v in body.items() if k != "encoding_format"}
    req = GatewayRequest.from_embeddings(
        upstream, aliases=services.catalog.aliases, default_model=services.catalog.routing.default_model,
        prompt_tokens=embeddings.prompt_tokens(body), hints=hints_of(request.headers),
        idempotency_key=request.headers.get("idempotency-key"), trace=trace_of(request.headers))
    result = await Gateway(services).handle(req, principal)
    if isinstance(result, Deferred):
        return deferred(result)
    assert not isinstance(result, Streaming)
    return JSONResponse(embeddings.render(result.response, body.get("encoding_format")), status_code=result.status,
                        headers=result.headers)
