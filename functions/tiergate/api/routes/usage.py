"""``GET /v1/usage``: the caller's own usage; the master may ask for any key or tenant."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    field_validator,
)

from tiergate.api.body import read_json, validate
from tiergate.api.deps import PrincipalDep, StoreDep, int_param
from tiergate.api.responses import JSONResponse
from tiergate.errors import PermissionDenied
from tiergate.limits import usage
from tiergate.limits.virtual_keys import DASHBOARD_SCOPE, USAGE_INGEST, has_scope
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


#: Printable ASCII: ids, names and codes in ingested records.
_PRINTABLE = r"^[\x20-\x7e]+$"
_TS_MIN = 1_577_836_800  # 2020-01-01: no record can be older than the product
_MAX_TOKENS = 10_000_000
_MAX_COST = 100.0        # per record: an edge's local request costs cents at most


def _epoch(v: float | str) -> float:
    """``ts`` as epoch seconds: a number, or an ISO 8601 time; 400 outside 2020..tomorrow."""
    if isinstance(v, str):
        try:
            d = datetime.fromisoformat(v)
        except ValueError:
            raise ValueError("ts must be epoch seconds or an ISO 8601 time") from None
        if d.tzinfo is None:
            d = d.replace(tzinfo=UTC)
        v = d.timestamp()
    if not _TS_MIN <= v <= time.time() + 86400:
        raise ValueError("ts must be a time between 2020-01-01 and tomorrow")
    return float(v)


Text = Annotated[str, StringConstraints(strict=True, max_length=256, pattern=_PRINTABLE)]


class IngestRecord(BaseModel):
    """One usage record from an edge agent (its local requests), keyed by its own ``id``.
    Strict: known fields only, JSON types as documented, values in range."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200, pattern=_PRINTABLE)]
    ts: Annotated[float, Strict()] | StrictStr
    source: Literal["edge"] = "edge"
    device: Text | None = None
    model: Text | None = None
    tier: StrictInt | None = Field(None, ge=0, le=4)
    prompt_tokens: StrictInt = Field(0, ge=0, le=_MAX_TOKENS)
    completion_tokens: StrictInt = Field(0, ge=0, le=_MAX_TOKENS)
    cost_usd: Annotated[float, Strict()] = Field(0.0, ge=0, le=_MAX_COST)
    latency_ms: Annotated[float, Strict()] | None = Field(None, ge=0, le=86_400_000)
    attempts: StrictInt | None = Field(None, ge=0, le=100)
    outcome: Annotated[str, StringConstraints(strict=True, max_length=64, pattern=r"^[a-z0-9_:.-]+$")] | None = None
    cache_hit: StrictBool = False
    #: What a local cache hit saved (the agent sends it on every record, 0 or null otherwise).
    saved_usd: Annotated[float, Strict()] | None = Field(None, ge=0, le=_MAX_COST)
    #: The edge's own (local) key and tenant: kept as ``edge_key_id`` / ``edge_tenant``;
    #: the record belongs to the cloud key that sends it.
    key_id: Text | None = None
    tenant: Text | None = None

    @field_validator("ts")
    @classmethod
    def _ts(cls, v: float | str) -> float:
        return _epoch(v)


class IngestBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[IngestRecord] = Field(max_length=1000)


@router.post("/v1/usage/ingest")
async def ingest_usage(request: Request, store: StoreDep, principal: PrincipalDep) -> JSONResponse:
    """Edge agents sync their local usage here when online. Only keys with the
    ``usage:ingest`` scope (and the master) may. Idempotent per record ``id``: a record
    already ingested is counted as a duplicate, never stored twice."""
    if not has_scope(principal, USAGE_INGEST):
        raise PermissionDenied("This API key may not ingest usage: it needs the 'usage:ingest' scope")
    batch = validate(IngestBatch, await read_json(request, 4 * 1024 * 1024, max_depth=4))
    accepted = duplicates = 0
    for r in batch.records:
        ts = usage.iso(float(r.ts))
        fields = r.model_dump(exclude={"key_id", "tenant", "ts"})
        rec = {**fields, "edge_key_id": r.key_id, "edge_tenant": r.tenant, "pk": principal.key_id,
               "sk": f"{ts}#edge:{r.id}", "ts": ts, "request_id": r.id, "key_id": principal.key_id,
               "tenant": principal.tenant, "charged": "actual", "expires_at": int(time.time()) + 400 * 86400}
        try:
            # Condition "absent": the same record id (and time) arriving again is a replay.
            await store.put("usage", rec, Cond(absent=True))
            accepted += 1
        except ConditionFailed:
            duplicates += 1
    return JSONResponse({"object": "tiergate.usage_ingest", "accepted": accepted, "duplicates": duplicates})
