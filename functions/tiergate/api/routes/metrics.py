"""``GET /metrics`` and ``POST /v1/admin/reset``; master key only.

``/metrics`` answers in the form the client asks for: Prometheus scrapers (``Accept:
text/plain`` or ``application/openmetrics-text``) get the Prometheus exposition of
:mod:`tiergate.observe.prometheus` (every home); everyone else -- JSON clients, and
``curl`` with no ``Accept`` -- seed 004's JSON (requests and cost per tier, budget
utilization, most used capabilities, for the current UTC month; homes with a store).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from tiergate.api.body import read_json
from tiergate.api.deps import MasterDep, ServicesDep, StoreDep, get_store
from tiergate.api.responses import JSONResponse
from tiergate.errors import InvalidRequest
from tiergate.limits import budgets, usage
from tiergate.observe.prometheus import Snapshot
from tiergate.services import Services

router = APIRouter()

PROMETHEUS_TYPES = ("text/plain", "application/openmetrics-text")


def wants_prometheus(accept: str | None) -> bool:
    """A scraper's Accept names the text or OpenMetrics format; ``*/*``, JSON or none do not."""
    return bool(accept) and any(t in accept.lower() for t in PROMETHEUS_TYPES)  # type: ignore[union-attr]


async def snapshot(services: Services) -> Snapshot:
    rows: list[dict] = []
    if services.store is not None:
        rows = await budgets.report(services.store, services.catalog.budgets, key=None, tenant=None, now=time.time())
    circuits = {d: str(c["state"]) for d, c in services.circuits.snapshot().items()}
    return Snapshot(circuits=circuits, budgets=rows,
                    edge=services.edge.edge_status() if services.edge is not None else None)


@router.get("/metrics")
async def get_metrics(request: Request, services: ServicesDep, _: MasterDep) -> Response:
    accept = request.headers.get("accept")
    if wants_prometheus(accept) and services.prometheus is not None:
        body, content_type = services.prometheus.render(accept, await snapshot(services))
        return Response(body, media_type=content_type)
    store = get_store(request)
    return JSONResponse(await usage.metrics(store, services.catalog.budgets, now=time.time()))


@router.post("/v1/admin/reset")
async def reset(request: Request, store: StoreDep, _: MasterDep) -> JSONResponse:
    """Body (optional): ``{"budgets": true}`` also zeroes every budget counter."""
    body = await read_json(request, 4096) if request.headers.get("content-length", "0") != "0" else {}
    if set(body) - {"budgets"} or not isinstance(body.get("budgets", False), bool):
        raise InvalidRequest('Body must be {} or {"budgets": true|false}')
    return JSONResponse({"object": "tiergate.reset", **await usage.reset(store, budgets=body.get("budgets", False))})
