"""FastAPI dependencies as ``Annotated`` aliases: the services, the caller, and the
optional parts a route needs (a 503 naming the part when this home has none)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request

from tiergate.errors import InvalidRequest, PermissionDenied, ServiceUnavailable
from tiergate.limits.admission import Principal
from tiergate.limits.virtual_keys import KeyService
from tiergate.services import Services
from tiergate.stores.base import RecordStore


def get_services(request: Request) -> Services:
    return request.app.state.services


def authorization(headers: Mapping[str, str]) -> str | None:
    """The caller's credential as an ``Authorization`` value: the header itself, or an
    ``x-api-key`` (how Anthropic clients send a key, Claude Code included) as a bearer
    token. The one place either is read; admission authenticates the result."""
    auth = headers.get("authorization")
    if auth:
        return auth
    key = headers.get("x-api-key")
    return f"Bearer {key}" if key else None


async def authenticate(request: Request) -> Principal:
    services: Services = request.app.state.services
    return await services.admission.authenticate(authorization(request.headers))


async def get_principal(request: Request) -> Principal:
    return await authenticate(request)


async def get_master(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.is_master:
        raise PermissionDenied("This endpoint needs the master key")
    return principal


def _missing(part: str) -> ServiceUnavailable:
    return ServiceUnavailable(f"This gateway runs without a store ({part} is not configured)")


def get_store(request: Request) -> RecordStore:
    store = get_services(request).store
    if store is None:
        raise _missing("store")
    return store


def get_keys(request: Request) -> KeyService:
    keys = get_services(request).virtual_keys
    if keys is None:
        raise _missing("virtual_keys")
    return keys


ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
MasterDep = Annotated[Principal, Depends(get_master)]
StoreDep = Annotated[RecordStore, Depends(get_store)]
KeysDep = Annotated[KeyService, Depends(get_keys)]


def int_param(value: str | None, name: str, *, lo: int, hi: int) -> int | None:
    """A query parameter as an int in [lo, hi], or a 400 naming it."""
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer", param=name) from None
    if not lo <= n <= hi:
        raise InvalidRequest(f"{name} must be between {lo} and {hi}", param=name)
    return n
