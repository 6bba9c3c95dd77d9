"""Every error leaves as an OpenAI-shaped body with the right status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tiergate.api.body import validation_message
from tiergate.api.responses import JSONResponse
from tiergate.errors import GatewayError

log = logging.getLogger("tiergate")

_HTTP_TYPES = {
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
}


def error_response(err: GatewayError) -> JSONResponse:
    return JSONResponse(err.to_body(), status_code=err.status, headers=err.headers or None)


def install(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway(_: Request, exc: GatewayError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("request failed: %s %s", exc.code, exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's 422 would leak pydantic internals; clients of OpenAI expect 400.
        parts = []
        param = None
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
            param = param or loc or None
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        body = {"error": {"message": "Invalid request: " + "; ".join(parts[:8]), "type": "invalid_request_error",
                          "param": param, "code": "invalid_request"}}
        return JSONResponse(body, status_code=400)

    @app.exception_handler(ValidationError)
    async def _pyd(_: Request, exc: ValidationError) -> JSONResponse:
        msg, param = validation_message(exc)
        return JSONResponse({"error": {"message": msg, "type": "invalid_request_error", "param": param,
                                         "code": "invalid_request"}}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        etype, code = _HTTP_TYPES.get(exc.status_code, ("api_error", "http_error"))
        return JSONResponse({"error": {"message": str(exc.detail), "type": etype, "param": None, "code": code}},
                              status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse({"error": {"message": "Internal error in the gateway", "type": "api_error",
                                         "param": None, "code": "internal_error"}}, status_code=500)
