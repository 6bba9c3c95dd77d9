"""The five-tier orchestrator's simple API: ``POST /generate`` and ``POST /code``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tiergate.api.body import read_json, validate
from tiergate.api.deps import PrincipalDep, ServicesDep
from tiergate.api.doors import chat_request
from tiergate.api.responses import JSONResponse
from tiergate.api.schemas import CodeRequest, GenerateRequest
from tiergate.gateway import Completed, Gateway

router = APIRouter()


def _render(done: Completed, extra: dict[str, Any]) -> JSONResponse:
    r = done.response
    choice = (r.get("choices") or [{}])[0]
    usage = r.get("usage") or {}
    body = {
        "response": (choice.get("message") or {}).get("content") or "",
        "model_used": done.deployment.name,
        "tier_used": done.deployment.tier,
        "cost_usd": done.cost_usd,
        "finish_reason": choice.get("finish_reason"),
        "usage": {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
        "route_reason": done.headers.get("x-tiergate-route-reason"),
        **extra,
    }
    return JSONResponse(body, headers=done.headers)


def _chat_body(messages: list[dict[str, str]], tier: int | None, max_tokens: int | None,
               temperature: float | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": f"tier:{tier}" if tier is not None else "auto", "messages": messages}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    return body


@router.post("/generate")
async def generate(request: Request, services: ServicesDep, principal: PrincipalDep) -> JSONResponse:
    req = validate(GenerateRequest, await read_json(request, services.settings.max_body_bytes))
    messages = ([{"role": "system", "content": req.system}] if req.system else []) + [
        {"role": "user", "content": req.prompt}]
    body = _chat_body(messages, req.preferred_tier, req.max_tokens, req.temperature)
    task = None if req.task_type == "auto" else req.task_type
    done = await Gateway(services).complete(chat_request(services, request, body, door="generate", task_hint=task),
                                            principal)
    return _render(done, {"task_type": req.task_type})


@router.post("/code")
async def code(request: Request, services: ServicesDep, principal: PrincipalDep) -> JSONResponse:
    req = validate(CodeRequest, await read_json(request, services.settings.max_body_bytes))
    system = (f"You are an expert {req.language} programmer. Answer with working {req.language} code in one "
              f"fenced code block, then a short explanation.")
    task = req.task + (f"\n\nAlso write unit tests for it in {req.language}." if req.include_tests else "")
    body = _chat_body([{"role": "system", "content": system}, {"role": "user", "content": task}],
                      req.preferred_tier, req.max_tokens, None)
    done = await Gateway(services).complete(chat_request(services, request, body, door="code", task_hint="coding"),
                                            principal)
    return _render(done, {"language": req.language, "include_tests": req.include_tests})
