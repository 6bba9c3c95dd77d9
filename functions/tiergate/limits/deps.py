"""FastAPI dependencies for the limits routes.

They read the app's ``request.app.state.services``: ``settings``, ``catalog``,
``admission`` (a :class:`StoreAdmission`) and the optional subsystems this package
registers (``store``, ``virtual_keys``, ``idempotency``; see ``limits/bootstrap.py``).
Caller identity comes from the app's own ``PrincipalDep``/``MasterDep``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from tiergate.admission import Principal
from tiergate.api.deps import MasterDep, PrincipalDep
from tiergate.errors import InvalidRequest, ServiceUnavailable
from tiergate.limits.idempotency import Idempotency
from tiergate.limits.keys import KeyService
from tiergate.stores.base import RecordStore

__all__ = ["IdempotencyDep", "KeysDep", "MasterDep", "Principal", "PrincipalDep", "StoreDep", "int_param"]


def _extra(request: Request, name: str) -> Any:
    obj = getattr(request.app.state.services, name, None)
    if obj is None:
        raise ServiceUnavailable(f"This gateway runs without a store ({name} is not configured)")
    return obj


def get_store(request: Request) -> RecordStore:
    return _extra(request, "store")


def get_keys(request: Request) -> KeyService:
    return _extra(request, "virtual_keys")


def get_idempotency(request: Request) -> Idempotency:
    return _extra(request, "idempotency")


StoreDep = Annotated[RecordStore, Depends(get_store)]
KeysDep = Annotated[KeyService, Depends(get_keys)]
IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]


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
