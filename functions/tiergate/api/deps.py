"""FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tiergate.admission import Principal
from tiergate.api.services import Services
from tiergate.errors import PermissionDenied


def get_services(request: Request) -> Services:
    return request.app.state.services


async def get_principal(request: Request) -> Principal:
    services: Services = request.app.state.services
    return await services.admission.authenticate(request.headers.get("authorization"))


async def get_master(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.is_master:
        raise PermissionDenied("This endpoint needs the master key")
    return principal


ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
MasterDep = Annotated[Principal, Depends(get_master)]


def tiergate_hints(request: Request) -> dict[str, str]:
    """Request headers that steer tiergate (``x-tiergate-*``), lowercased."""
    return {k: v for k, v in request.headers.items() if k.startswith("x-tiergate-")}
