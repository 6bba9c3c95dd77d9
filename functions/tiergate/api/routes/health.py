"""``GET /health`` and ``GET /info``: liveness, what is usable, circuit states."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from tiergate import __version__
from tiergate.api.deps import ServicesDep

router = APIRouter()


def _deployments(services: ServicesDep) -> list[dict[str, Any]]:
    out = []
    for s in services.catalog.models:
        why = services.availability(s)
        out.append({"model": s.name, "deployment": s.deployment_id, "tier": s.tier, "adapter": s.adapter,
                    "available": why is None, "unavailable_reason": why,
                    "circuit": services.circuits.state(s.deployment_id)})
    return out


def _auth(services: ServicesDep) -> dict[str, Any]:
    if services.settings.master_key is not None:
        return {"master_key": True}
    return {"master_key": False, "warning": "no TIERGATE_MASTER_KEY: any bearer token is the master, so virtual "
                                            "keys bind only the clients that present them (loopback only)"}


@router.get("/health")
async def health(services: ServicesDep) -> dict[str, Any]:
    deps = _deployments(services)
    usable = [d for d in deps if d["available"] and d["circuit"] != "open"]
    out: dict[str, Any] = {
        "status": "ok" if usable else "degraded",
        "version": __version__,
        "available_models": sorted({d["model"] for d in usable}),
        "deployments": deps,
        "circuits": services.circuits.snapshot(),
        "auth": _auth(services),
    }
    for src in services.health_sources:
        out.update(src.health_info())
    return out


@router.get("/info")
async def info(services: ServicesDep) -> dict[str, Any]:
    cat = services.catalog
    tiers: dict[str, list[dict[str, Any]]] = {}
    for s in cat.models:
        tiers.setdefault(str(s.tier), []).append({
            "model": s.name, "litellm_model": s.model, "adapter": s.adapter,
            "input_cost_per_mtok": s.input_cost_per_mtok, "output_cost_per_mtok": s.output_cost_per_mtok,
            "context_window": s.context_window, "capabilities": sorted(s.capabilities or ()),
            "available": services.availability(s) is None})
    return {
        "name": "tiergate", "version": __version__, "catalog": cat.source,
        "tiers": tiers, "aliases": cat.aliases, "cascades": sorted(cat.cascades),
        "task_tiers": cat.routing.task_tiers, "default_model": cat.routing.default_model,
        "endpoints": ["POST /v1/chat/completions", "GET /v1/models", "POST /v1/route", "GET /health",
                      "GET /info", "POST /generate", "POST /code"],
    }
