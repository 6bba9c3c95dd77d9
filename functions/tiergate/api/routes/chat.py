"""``POST /v1/chat/completions``: parse, hand to the gateway, render."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from tiergate.api.body import read_json, validate
from tiergate.api.deps import PrincipalDep, ServicesDep, tiergate_hints
from tiergate.api.responses import JSONResponse
from tiergate.api.schemas import ChatRequest
from tiergate.errors import OffloadUnavailable
from tiergate.gateway import Gateway

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, services: ServicesDep, principal: PrincipalDep) -> Response:
    body = await read_json(request, services.settings.max_body_bytes)
    req = validate(ChatRequest, body)
    hints = tiergate_hints(request)
    gw = Gateway(services)
    try:
        if req.stream:
            s = await gw.stream(body, principal, hints)
            return StreamingResponse(s.chunks, media_type="text/event-stream", headers=s.headers,
                                     background=BackgroundTask(s.settle))
        done = await gw.complete(body, principal, hints)
    except OffloadUnavailable:
        if services.deferrer is not None and hints.get("x-tiergate-defer", "").lower() == "allow":
            job_id = await services.deferrer.defer(body, principal, hints)
            return JSONResponse({"id": job_id, "object": "tiergate.job", "status": "queued"}, status_code=202,
                                  headers={"location": f"/v1/jobs/{job_id}"})
        raise
    return JSONResponse(done.response, headers=done.headers, background=BackgroundTask(done.settle))
