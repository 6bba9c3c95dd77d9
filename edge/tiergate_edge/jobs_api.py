"""``GET /v1/jobs/{id}``: a deferred request's state and, once done, its result."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from tiergate.api.deps import PrincipalDep, ServicesDep
from tiergate.errors import NotFound

router = APIRouter()


@router.get("/v1/jobs/{job_id}")
async def get_job(job_id: str, services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    if services.jobs is None:
        raise NotFound(f"No job '{job_id}'", param="job_id")
    job = await services.jobs.get(job_id)
    # Another key's job is reported as missing, not forbidden: ids are not secrets to confirm.
    if job is None or not (principal.is_master or job.principal.get("key_id") == principal.key_id):
        raise NotFound(f"No job '{job_id}'", param="job_id")
    return job.public()
