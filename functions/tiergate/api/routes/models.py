"""``GET /v1/models``: what clients may put in ``model``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from tiergate.api.deps import PrincipalDep, ServicesDep
from tiergate.errors import ModelNotFound

router = APIRouter()


def _entries(services: ServicesDep, principal: PrincipalDep) -> list[dict[str, Any]]:
    cat = services.catalog
    out: list[dict[str, Any]] = []
    for name, group in cat.groups.items():
        if not any(principal.may_use(s) for s in group):
            continue
        why = [services.availability(s) for s in group]
        caps = sorted(set().union(*(s.capabilities or () for s in group)))
        out.append({"id": name, "object": "model", "created": 0, "owned_by": "tiergate",
                    "tier": group[0].tier, "deployments": len(group), "capabilities": caps,
                    "embeddings": "embeddings" in caps,
                    "available": any(w is None for w in why),
                    "unavailable_reason": None if any(w is None for w in why) else why[0]})
    for alias, target in cat.aliases.items():
        out.append({"id": alias, "object": "model", "created": 0, "owned_by": "tiergate", "alias_of": target})
    out.append({"id": "auto", "object": "model", "created": 0, "owned_by": "tiergate"})
    for t in cat.tiers():
        out.append({"id": f"tier:{t}", "object": "model", "created": 0, "owned_by": "tiergate", "tier": t})
    for policy in cat.cascades:
        out.append({"id": "cascade" if policy == "default" else f"cascade:{policy}", "object": "model",
                    "created": 0, "owned_by": "tiergate"})
    return out


@router.get("/v1/models")
async def list_models(services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    return {"object": "list", "data": _entries(services, principal)}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    for e in _entries(services, principal):
        if e["id"] == model_id:
            return e
    raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")
