"""``POST /v1/route``: the routing decision and why, calling no model.

The body is any front door's: a chat body by default, or with ``?door=messages``,
``responses``, ``completions`` or ``embeddings`` that door's own body, translated exactly as
the door translates it (so the plan is the one the door would get)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request

from tiergate.api.body import read_json, validate
from tiergate.api.deps import PrincipalDep, ServicesDep
from tiergate.api.door_schemas import CompletionsRequest, EmbeddingsRequest, MessagesRequest, ResponsesRequest
from tiergate.api.doors import chat_request
from tiergate.api.schemas import RouteRequest
from tiergate.dialects import anthropic, completions, embeddings, responses
from tiergate.errors import InvalidRequest
from tiergate.gateway import Gateway
from tiergate.limits.admission import Principal
from tiergate.request import GatewayRequest, NativeBody, hints_of
from tiergate.routing.learned.serving import TARGET_HEADER
from tiergate.services import Services

router = APIRouter()
DOORS = ("chat", "messages", "responses", "completions", "embeddings")


async def _request(door: str, services: Services, request: Request, body: dict[str, Any],
                   principal: Principal) -> GatewayRequest:
    if door == "chat":
        validate(RouteRequest, body)  # a chat body, with an optional draft
        return chat_request(services, request, {k: v for k, v in body.items() if k != "draft"})
    if door == "messages":
        validate(MessagesRequest, body)
        return chat_request(services, request, anthropic.to_chat(body), door=door,
                            native=NativeBody("anthropic", anthropic.native_body(body)))
    if door == "responses":
        validate(ResponsesRequest, body)
        history: list[dict[str, Any]] = []
        if body.get("previous_response_id") and services.responses is not None:
            history = await services.responses.history(principal, body["previous_response_id"])
        return chat_request(services, request, responses.to_chat(body, history)[0], door=door)
    if door == "completions":
        validate(CompletionsRequest, body)
        return chat_request(services, request, completions.to_chat(body), door=door)
    validate(EmbeddingsRequest, body)
    return GatewayRequest.from_embeddings(
        body, aliases=services.catalog.aliases, default_model=services.catalog.routing.default_model,
        prompt_tokens=embeddings.prompt_tokens(body), hints=hints_of(request.headers))


@router.post("/v1/route")
async def route(request: Request, services: ServicesDep, principal: PrincipalDep, door: str = "chat") -> dict[str, Any]:
    if door not in DOORS:
        raise InvalidRequest(f"door must be one of {', '.join(DOORS)}", param="door")
    body = await read_json(request, services.settings.max_body_bytes)
    draft = body.get("draft") if door == "chat" else body.pop("draft", None)
    target = body.pop("quality_target", None)
    req = await _request(door, services, request, body, principal)
    if target is not None:
        # The dry run also takes the target in the body: the same as x-tiergate-quality-target.
        req = dataclasses.replace(req, hints={**req.hints, TARGET_HEADER: str(target)})
    plan, _ = await Gateway(services).planned(req, principal)  # session affinity applies; nothing is written
    out = {"door": door, **plan.describe()}
    if plan.candidates and plan.needs is not None:
        out["estimated_max_cost_usd"] = round(Gateway.estimate(plan.candidates[0], plan)[2], 10)
        if req.native is not None:
            out["native"] = plan.candidates[0].has("messages_api")
    if services.cache is not None:
        out["cache"] = await services.cache.explain(req, principal, plan)
    if draft is not None and services.cascades is not None and req.operation == "chat":
        out["draft"] = services.cascades.explain(req, plan.cascade_policy, draft)
    return out
