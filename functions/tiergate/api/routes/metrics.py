"""Seed 004's ``GET /metrics`` (requests and cost per tier, budget utilization, most used
capabilities, for the current UTC month) and ``POST /v1/admin/reset``; master key only."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, StrictBool

from tiergate.api.body import read_json
from tiergate.api.deps import MasterDep, StoreDep
from tiergate.api.responses import JSONResponse
from tiergate.errors import InvalidRequest
from tiergate.limits import usage

router = APIRouter()


@router.get("/metrics")
async def get_metrics(request: Request, store: StoreDep, _: MasterDep) -> JSONResponse:
    cfg = request.app.state.services.catalog.budgets
    return JSONResponse(await usage.metrics(store, cfg, now=time.time()))


class ResetRequest(BaseModel):
    """``POST /v1/admin/reset`` (the body is optional)."""

    model_config = ConfigDict(extra="forbid")

    budgets: StrictBool = False


@router.post("/v1/admin/reset")
async def reset(request: Request, store: StoreDep, _: MasterDep) -> JSONResponse:
    """Body (optional): ``{"budgets": true}`` also zeroes every budget counter."""
    body = await read_json(request, 4096) if request.headers.get("content-length", "0") != "0" else {}
    if set(body) - {"budgets"} or not isinstance(body.get("budgets", False), bool):
        raise InvalidRequest('Body must be {} or {"budgets": true|false}')
    return JSONResponse({"object": "tiergate.reset", **await usage.reset(store, budgets=body.get("budgets", False))})
