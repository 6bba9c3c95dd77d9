"""``GET /v1/budget``: limits, spent, reserved and remaining per scope, period and tier."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from tiergate.api.deps import KeysDep, PrincipalDep, StoreDep
from tiergate.api.responses import JSONResponse
from tiergate.limits import budgets

router = APIRouter()


@router.get("/v1/budget")
async def get_budget(request: Request, store: StoreDep, keys: KeysDep, principal: PrincipalDep,
                     tenant: str | None = None, key_id: str | None = None) -> JSONResponse:
    """Own key: its key, tenant and global scopes. Master: global (and a tenant's or a key's)."""
    cfg = request.app.state.services.catalog.budgets
    key, tenant = await budgets.subject(principal, keys, tenant=tenant, key_id=key_id)
    scopes = await budgets.report(store, cfg, key=key, tenant=tenant, now=time.time())
    return JSONResponse({"object": "tiergate.budget", "soft_limit_fraction": cfg.soft_limit_fraction,
                         "key_id": key.key_id if key else None, "tenant": tenant, "scopes": scopes})
