"""Every error leaves with the right status, in the shape of the API the client called:
OpenAI's ``{"error": {...}}`` everywhere, Anthropic's ``{"type": "error", "error": {...}}``
on the Anthropic Messages door (decided by the request path, so errors raised before the
door's code runs -- auth, body size, routing -- are shaped too)."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tiergate.api.body import validation_message
from tiergate.api.responses import JSONResponse
from tiergate.dialects import anthropic
from tiergate.errors import GatewayError

log = logging.getLogger("tiergate")

_HTTP_TYPES = {
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
}


#: The doors listed first in a 404 (the rest follow in path order).
_MAIN_DOORS = ("/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/responses", "/v1/embeddings",
               "/v1/models", "/v1/route")


def unknown_path_message(request: Request) -> str:
    """A 404 for a path no route serves: say which doors exist (and where the docs are)."""
    # The OpenAPI document is the list of documented doors (FastAPI builds it once, then caches it).
    paths = request.app.openapi().get("paths", {})
    doors: dict[str, set[str]] = {p: {m.upper() for m in ops} for p, ops in paths.items()}
    order = [p for p in _MAIN_DOORS if p in doors] + sorted(p for p in doors if p not in _MAIN_DOORS)
    listed = ", ".join(f"{'/'.join(sorted(doors[p]))} {p}" for p in order[:14])
    more = f" and {len(order) - 14} more" if len(order) > 14 else ""
    return (f"No endpoint {request.method} {request.url.path}. This gateway serves {listed}{more}; "
            f"see /docs. OpenAI clients use the base URL <host>/v1.")


#: The Anthropic door's paths (``/v1/messages``, ``/v1/messages/count_tokens``), also
#: under a stage prefix.
_ANTHROPIC_PATH = re.compile(r"(?:^|/)v1/messages(?:/|$)")


def is_anthropic(path: str) -> bool:
    return _ANTHROPIC_PATH.search(path) is not None


def error_response(err: GatewayError, path: str = "") -> JSONResponse:
    return _respond(path, err.to_body(), err.status, err.headers or None)


def _respond(path: str, body: dict[str, Any], status: int, headers: Any = None) -> JSONResponse:
    """The OpenAI-shaped ``body`` as is, or in Anthropic's shape on its door."""
    if is_anthropic(path):
        body = anthropic.error_body(status, body["error"]["message"])
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway(request: Request, exc: GatewayError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("request failed: %s %s", exc.code, exc.message)
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's 422 would leak pydantic internals; clients of OpenAI expect 400.
        parts = []
        param = None
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
            param = param or loc or None
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        body = {"error": {"message": "Invalid request: " + "; ".join(parts[:8]), "type": "invalid_request_error",
                          "param": param, "code": "invalid_request"}}
        return _respond(request.url.path, body, 400)

    @app.exception_handler(ValidationError)
    async def _pyd(request: Request, exc: ValidationError) -> JSONResponse:
        msg, param = validation_message(exc)
        return _respond(request.url.path, {"error": {"message": msg, "type": "invalid_request_error", "param": param,
                                                     "code": "invalid_request"}}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        etype, code = _HTTP_TYPES.get(exc.status_code, ("api_error", "http_error"))
        message = str(exc.detail)
        if exc.status_code == 404 and exc.detail == "Not Found":  # no route matched the path
            message = unknown_path_message(request)
        return _respond(request.url.path,
                        {"error": {"message": message, "type": etype, "param": None, "code": code}},
                        exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _respond(request.url.path, {"error": {"message": "Internal error in the gateway", "type": "api_error",
                                                     "param": None, "code": "internal_error"}}, 500)
