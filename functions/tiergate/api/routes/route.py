"""``POST /v1/route``: the routing decision and why, calling no model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tiergate.api.body import read_json, validate
from tiergate.api.deps import PrincipalDep, ServicesDep, tiergate_hints
from tiergate.api.schemas import RouteRequest

router = APIRouter()


@router.post("/v1/route")
async def route(request: Request, services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    body = await read_json(request, services.settings.max_body_bytes)
    validate(RouteRequest, body)
    chat = {k: v for k, v in body.items() if k != "draft"}
    plan = services.router.plan(chat, principal, hints=tiergate_hints(request))
    out = plan.describe()
    if plan.candidates and plan.needs is not None:
        spec = plan.candidates[0]
        max_out = plan.needs.max_output_tokens or spec.max_output_tokens or 4096
        out["estimated_max_cost_usd"] = round(spec.cost_usd(plan.needs.prompt_tokens, max_out), 10)
    explain = services.extra.get("draft_explainer")
    if body.get("draft") is not None and explain is not None:
        out["draft"] = explain(plan, chat, body["draft"])
    return out
