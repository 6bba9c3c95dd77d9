"""``GET /v1/usage``: the caller's own usage; the master may ask for any key or tenant."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tiergate.api.body import read_json, validate
from tiergate.api.deps import PrincipalDep, StoreDep, int_param
from tiergate.api.responses import JSONResponse
from tiergate.errors import PermissionDenied
from tiergate.limits import usage
from tiergate.limits.virtual_keys import DASHBOARD_SCOPE, has_scope
from tiergate.stores.base import Cond, ConditionFailed

router = APIRouter()


@router.get("/v1/usage")
async def get_usage(store: StoreDep, principal: PrincipalDep, period: str = "month", tier: str | None = None,
                    model: str | None = None, tenant: str | None = None, key_id: str | None = None,
                    limit: str | None = None) -> JSONResponse:
    if not principal.is_master:
        if has_scope(principal, DASHBOARD_SCOPE):
            # A dashboard key reads its own tenant (any of its keys), never another.
            if tenant and tenant != principal.tenant:
                raise PermissionDenied("A dashboard key may read only its own tenant's usage")
            tenant = principal.tenant
        elif (tenant and tenant != principal.tenant) or (key_id and key_id != principal.key_id):
            raise PermissionDenied("Only the master key may read other keys' or tenants' usage")
        else:
            key_id, tenant = principal.key_id, None
    n = int_param(limit, "limit", lo=1, hi=10_000) or 1000
    since = usage.period_start(period, time.time())
    recs = await usage.query(store, key_id=key_id, tenant=tenant, since=since,
                             tier=int_param(tier, "tier", lo=0, hi=4), model=model, limit=n)
    return JSONResponse({"object": "list", "period": period, "summary": usage.summarize(recs), "data": recs})


class IngestRecord(BaseModel):
    """One usage record from an edge agent (its local requests), keyed by its own ``id``."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=200)
    ts: float | str
    model: str | None = None
    tier: int | None = Field(None, ge=0, le=4)
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    cost_usd: float = Field(0.0, ge=0)
    latency_ms: float | None = None
    outcome: str | None = None
    device: str | None = None
    source: str = "edge"


class IngestBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[IngestRecord] = Field(max_length=1000)


@router.post("/v1/usage/ingest")
async def ingest_usage(request: Request, store: StoreDep, principal: PrincipalDep) -> JSONResponse:
    """Edge agents sync their local usage here when online. Idempotent per record ``id``:
    a record already ingested is counted as a duplicate, never stored twice."""
    batch = validate(IngestBatch, await read_json(request, 4 * 1024 * 1024))
    accepted = duplicates = 0
    for r in batch.records:
        ts = r.ts if isinstance(r.ts, str) else usage.iso(r.ts)
        rec = {**r.model_dump(), "pk": principal.key_id, "sk": f"{ts}#edge:{r.id}", "ts": ts,
               "request_id": r.id, "key_id": principal.key_id, "tenant": principal.tenant,
               "expires_at": int(time.time()) + 400 * 86400}
        try:
            # Condition "absent": the same record id (and time) arriving again is a replay.
            await store.put("usage", rec, Cond(absent=True))
            accepted += 1
        except ConditionFailed:
            duplicates += 1
    return JSONResponse({"object": "tiergate.usage_ingest", "accepted": accepted, "duplicates": duplicates})
