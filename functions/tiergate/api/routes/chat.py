"""``POST /v1/chat/completions``: parse, hand to the gateway, render.

Mounted by ``create_app`` as a plain Starlette route (the hot path), not an APIRouter."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from tiergate.admission import Principal
from tiergate.api.body import read_json, validate
from tiergate.api.deps import tiergate_hints
from tiergate.api.responses import JSONResponse
from tiergate.api.schemas import ChatRequest
from tiergate.api.services import Services
from tiergate.api.sse_response import EventStreamResponse
from tiergate.errors import OffloadUnavailable
from tiergate.gateway import Gateway
from tiergate.limits.idempotency import Hit, request_hash


async def chat_completions(request: Request) -> Response:
    # The hot path: services and the caller are looked up directly rather than through
    # FastAPI dependencies (their resolution costs more than the rest of the route).
    services: Services = request.app.state.services
    principal = await services.admission.authenticate(request.headers.get("authorization"))
    body = await read_json(request, services.settings.max_body_bytes)
    req = validate(ChatRequest, body)
    hints = tiergate_hints(request)
    gw = Gateway(services)
    try:
        if req.stream:
            s = await gw.stream(body, principal, hints)
            return EventStreamResponse(s.chunks, s.headers)
        return await _complete(gw, services, body, principal, hints, request.headers.get("idempotency-key"))
    except OffloadUnavailable:
        if services.deferrer is not None and hints.get("x-tiergate-defer", "").lower() == "allow":
            job_id = await services.deferrer.defer(body, principal, hints)
            return JSONResponse({"id": job_id, "object": "tiergate.job", "status": "queued"}, status_code=202,
                                headers={"location": f"/v1/jobs/{job_id}"})
        raise


async def _complete(gw: Gateway, services: Services, body: dict[str, Any], principal: Principal,
                    hints: dict[str, str], idem_key: str | None) -> Response:
    """A non-streaming completion; with ``Idempotency-Key``, a retry replays the first
    response instead of paying twice (a concurrent duplicate gets 409 or waits)."""
    idem = services.extra.get("idempotency")
    started = None
    if idem_key and idem is not None:
        got = await idem.begin(principal.key_id, idem_key, request_hash(body))
        if isinstance(got, Hit):
            return JSONResponse(got.body, status_code=got.status,
                                headers={**got.headers, "x-tiergate-idempotent-replay": "true"})
        started = got
    try:
        done = await gw.complete(body, principal, hints)
        await done.settle()  # durable before the client sees the answer (see Admission.settle)
    except BaseException:
        if started is not None:
            await idem.fail(started)
        raise
    if started is not None:
        await idem.complete(started, 200, done.response, done.headers)
    return JSONResponse(done.response, headers=done.headers)
