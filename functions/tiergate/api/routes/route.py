"""``POST /v1/route``: the routing decision and why, calling no model."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request

from tiergate.api.body import read_json, validate
from tiergate.api.deps import PrincipalDep, ServicesDep
from tiergate.api.doors import chat_request
from tiergate.api.schemas import RouteRequest
from tiergate.gateway import Gateway
from tiergate.routing.learned.serving import TARGET_HEADER

router = APIRouter()


@router.post("/v1/route")
async def route(request: Request, services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    body = await read_json(request, services.settings.max_body_bytes)
    validate(RouteRequest, body)
    chat = {k: v for k, v in body.items() if k not in ("draft", "quality_target")}
    req = chat_request(services, request, chat)
    if body.get("quality_target") is not None:
        # The dry run also takes the target in the body: the same as x-tiergate-quality-target.
        req = dataclasses.replace(req, hints={**req.hints, TARGET_HEADER: str(body["quality_target"])})
    plan, _ = await Gateway(services).planned(req, principal)  # session affinity applies; nothing is written
    out = plan.describe()
    if plan.candidates and plan.needs is not None:
        out["estimated_max_cost_usd"] = round(Gateway.estimate(plan.candidates[0], plan)[2], 10)
    if body.get("draft") is not None and services.cascades is not None:
        out["draft"] = services.cascades.explain(req, plan.cascade_policy, body["draft"])
    return out
