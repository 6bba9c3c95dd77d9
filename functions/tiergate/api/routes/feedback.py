"""``POST /v1/feedback``: a caller's verdict on one of its requests, a training label."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tiergate.api.body import read_json, validate
from tiergate.api.deps import PrincipalDep, ServicesDep
from tiergate.api.responses import JSONResponse
from tiergate.errors import ServiceUnavailable
from tiergate.routing.learned.labels import MAX_COMMENT, feedback_score

router = APIRouter()


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The gateway's request id (the ``x-request-id`` response header).
    request_id: str = Field(min_length=1, max_length=200)
    score: float | None = Field(None, ge=0, le=1)
    thumbs: Literal["up", "down"] | None = None
    comment: str | None = Field(None, max_length=MAX_COMMENT)


@router.post("/v1/feedback")
async def feedback(request: Request, services: ServicesDep, principal: PrincipalDep) -> JSONResponse:
    body = validate(FeedbackRequest, await read_json(request, 64 * 1024))
    if services.labels is None:
        raise ServiceUnavailable("This gateway does not collect labels: add routing.learned to the catalog "
                                 "(and run it with a store)")
    rec = await services.labels.feedback(principal, body.request_id,
                                         score=feedback_score(body.score, body.thumbs), thumbs=body.thumbs,
                                         comment=body.comment)
    return JSONResponse({"object": "tiergate.feedback", **rec}, status_code=201)
