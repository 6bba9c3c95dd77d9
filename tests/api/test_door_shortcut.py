"""GatewayApp's shortcut: a POST to a front door answers before the middleware stack, and
answers exactly as the ordinary path would (same status, body and headers for success,
a handled error, an Anthropic-door error, an unhandled error)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from tiergate.api import errors
from tiergate.api.app import GatewayApp
from tiergate.api.responses import JSONResponse
from tiergate.errors import RateLimited


class _Body(BaseModel):
    n: int


async def _ok(request: Request) -> Response:
    return JSONResponse({"ok": True, "path": request.url.path}, headers={"x-tiergate-test": "1"})


async def _limited(request: Request) -> Response:
    raise RateLimited("slow down", retry_after=3)


async def _invalid(request: Request) -> Response:
    _Body.model_validate(await request.json())
    raise AssertionError("not reached")


async def _boom(request: Request) -> Response:
    raise RuntimeError("a bug")


DOORS = {"/v1/ok": _ok, "/v1/limited": _limited, "/v1/messages": _limited, "/v1/invalid": _invalid,
         "/v1/boom": _boom}


def _app(cls: type[FastAPI]) -> FastAPI:
    app = cls()
    errors.install(app)
    for path, door in DOORS.items():
        app.add_route(path, door, methods=["POST"])
    if isinstance(app, GatewayApp):
        app.doors = dict(DOORS)
    return app


async def _post(app: FastAPI, path: str, **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.post(path, **kw)


@pytest.mark.parametrize("path", [*DOORS, "/v1/nowhere"])
async def test_a_door_answers_as_on_the_ordinary_path(path: str) -> None:
    kw = {"json": {"n": "many"}}
    ordinary, shortcut = await _post(_app(FastAPI), path, **kw), await _post(_app(GatewayApp), path, **kw)
    assert (shortcut.status_code, shortcut.json()) == (ordinary.status_code, ordinary.json())
    assert {k: v for k, v in shortcut.headers.items() if k != "content-length"} == \
        {k: v for k, v in ordinary.headers.items() if k != "content-length"}
    assert shortcut.status_code == {"/v1/ok": 200, "/v1/limited": 429, "/v1/messages": 429, "/v1/invalid": 400,
                                    "/v1/boom": 500, "/v1/nowhere": 404}[path]


async def test_an_unhandled_error_answers_500_and_is_raised_for_the_server_to_log() -> None:
    transport = httpx.ASGITransport(app=_app(GatewayApp))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        with pytest.raises(RuntimeError, match="a bug"):
            await c.post("/v1/boom")


async def test_the_middleware_stack_is_passed_by_for_a_door_post_only() -> None:
    app = _app(GatewayApp)
    calls: list[str] = []
    stack = app.build_middleware_stack()

    async def counted(scope, receive, send):  # type: ignore[no-untyped-def]
        calls.append(f"{scope['method']} {scope['path']}")
        await stack(scope, receive, send)

    app.middleware_stack = counted
    assert (await _post(app, "/v1/ok")).status_code == 200
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/v1/ok")).status_code == 405  # another method: the ordinary path
    assert calls == ["GET /v1/ok"]
