"""Admin API for virtual keys (master key only): create, list, get, update, revoke.

The secret is in the create response only; the store keeps its sha256."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tiergate.api.body import read_json, validate
from tiergate.api.deps import KeysDep, MasterDep
from tiergate.api.responses import JSONResponse
from tiergate.errors import InvalidRequest
from tiergate.limits.virtual_keys import KeyCreate, KeyLimits, VirtualKey

router = APIRouter()


def render(key: VirtualKey) -> dict[str, Any]:
    return {"id": key.key_id, "object": "tiergate.key", **key.model_dump(exclude={"key_id"})}


@router.post("/v1/keys")
async def create_key(request: Request, keys: KeysDep, _: MasterDep) -> JSONResponse:
    spec = validate(KeyCreate, await read_json(request, 64 * 1024))
    key, secret = await keys.create(spec)
    return JSONResponse({**render(key), "key": secret}, status_code=201)


@router.get("/v1/keys")
async def list_keys(keys: KeysDep, _: MasterDep, tenant: str | None = None) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [render(k) for k in await keys.list(tenant=tenant)]})


@router.get("/v1/keys/{key_id}")
async def get_key(key_id: str, keys: KeysDep, _: MasterDep) -> JSONResponse:
    return JSONResponse(render(await keys.get(key_id)))


@router.patch("/v1/keys/{key_id}")
async def update_key(key_id: str, request: Request, keys: KeysDep, _: MasterDep) -> JSONResponse:
    data = await read_json(request, 64 * 1024)
    patch = validate(KeyLimits, data).model_dump(include=set(data))
    if not patch:
        raise InvalidRequest("Nothing to update: send some of " + ", ".join(KeyLimits.model_fields))
    return JSONResponse(render(await keys.update(key_id, patch)))


@router.delete("/v1/keys/{key_id}")
async def revoke_key(key_id: str, keys: KeysDep, _: MasterDep) -> JSONResponse:
    key = await keys.revoke(key_id)
    return JSONResponse({**render(key), "deleted": True})
