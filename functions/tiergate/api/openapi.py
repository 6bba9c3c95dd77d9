"""A complete, true ``/openapi.json``: every route with its request body, its responses and
the errors it can give, and how to authenticate -- for client generators and fuzzers.

FastAPI documents what it can see: routes whose bodies are read by hand (size- and
depth-capped, :mod:`tiergate.api.body`) show no body, the hot-path doors are plain
Starlette routes it does not see at all, and it adds a ``422`` that this app never
returns (validation errors are OpenAI-shaped 400s). The schema is completed here from
:data:`BODIES` once, at the first ``GET /openapi.json``: nothing runs per request.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.routing import Route

from tiergate.api.door_schemas import (
    CompletionsRequest,
    CountTokensRequest,
    EmbeddingsRequest,
    MessagesRequest,
    ResponsesRequest,
)
from tiergate.api.routes.metrics import ResetRequest
from tiergate.api.routes.usage import IngestBatch
from tiergate.api.schemas import ChatRequest, CodeRequest, GenerateRequest, RouteRequest
from tiergate.limits.virtual_keys import KeyCreate, KeyLimits

#: (method, path) -> the body model it validates, and a summary for routes FastAPI cannot see.
BODIES: dict[tuple[str, str], tuple[type[BaseModel], str]] = {
    ("post", "/v1/chat/completions"): (ChatRequest, "OpenAI chat completions (tools, JSON, streaming)"),
    ("post", "/v1/messages"): (MessagesRequest, "Anthropic Messages"),
    ("post", "/v1/messages/count_tokens"): (CountTokensRequest, "Anthropic token count of a Messages body"),
    ("post", "/v1/responses"): (ResponsesRequest, "OpenAI Responses"),
    ("post", "/v1/completions"): (CompletionsRequest, "OpenAI legacy completions"),
    ("post", "/v1/embeddings"): (EmbeddingsRequest, "OpenAI embeddings"),
    ("post", "/v1/route"): (RouteRequest, "Dry-run routing decision (calls no model)"),
    ("post", "/generate"): (GenerateRequest, "Five-tier simple API: generate"),
    ("post", "/code"): (CodeRequest, "Five-tier simple API: code"),
    ("post", "/v1/keys"): (KeyCreate, "Create a virtual key (master key)"),
    ("patch", "/v1/keys/{key_id}"): (KeyLimits, "Update a virtual key (master key)"),
    ("post", "/v1/usage/ingest"): (IngestBatch, "Edge agents sync usage (keys with the usage:ingest scope)"),
    ("post", "/v1/admin/reset"): (ResetRequest, "Reset usage metrics, optionally budget counters (master key)"),
}
#: Bodies that may be left out.
OPTIONAL_BODIES = frozenset({("post", "/v1/admin/reset")})
#: Routes that call a model: they can be rate limited, over budget, or fail upstream.
MODEL_CALLS = frozenset({"/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/completions",
                         "/v1/embeddings", "/generate", "/code"})
#: Doors that stream with ``stream: true``.
STREAMING = frozenset({"/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/completions"})
#: Routes anyone may call.
PUBLIC = frozenset({"/health", "/info", "/openapi.json", "/docs"})

_ERRORS = {
    "400": "Invalid request (malformed JSON, too deep, a bad value), OpenAI-shaped",
    "401": "Missing or invalid API key",
    "403": "The key may not do this (tier, model, scope, master-only)",
    "404": "Unknown model, key, job or response",
    "409": "Idempotency-Key in use by a request still in progress (Retry-After), or reused for another body",
    "413": "Request body over the size limit",
    "429": "Rate limited (Retry-After, x-ratelimit-*) or budget exceeded (insufficient_quota)",
    "502": "Upstream failure, naming every attempt (error.tiergate.attempts)",
    "503": "No usable deployment, an open circuit, or (edge) the cloud unreachable",
    "504": "Upstream timeout or the request deadline",
}
ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]},
                       "tiergate": {"type": "object", "description": "details: attempts, scope, limit ..."}}}},
}


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` by the completed document (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                 description="tiergate: an OpenAI-compatible LLM gateway with tiered routing, "
                                             "cascades, budgets and rate limits.")
            complete(schema, app.routes)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_INTERNAL = ("/openapi.json", "/docs", "/docs/oauth2-redirect")


def _route_methods(routes: Iterable[Any]) -> dict[str, set[str]]:
    """path -> methods of every route the app serves (the doors, hidden from FastAPI, too)."""
    out: dict[str, set[str]] = {}
    for r in routes:
        if isinstance(r, Route) and r.path not in _INTERNAL:
            out.setdefault(r.path, set()).update(m.lower() for m in (r.methods or ()) if m != "HEAD")
    return out


def complete(schema: dict[str, Any], routes: Iterable[Any]) -> None:
    comps = schema.setdefault("components", {})
    models = comps.setdefault("schemas", {})
    models["Error"] = ERROR_SCHEMA
    comps["responses"] = {code: {"description": text, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}} for code, text in _ERRORS.items()}
    comps["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "a virtual key (sk-tg-...) or the master key"},
        "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key",
                      "description": "the same key, as Anthropic clients send it"}}
    paths = schema.setdefault("paths", {})
    for path, methods in _route_methods(routes).items():
        item = paths.setdefault(_openapi_path(path), {})
        for m in methods:
            item.setdefault(m, {"summary": BODIES.get((m, path), (None, path))[1], "responses": {}})
    for (method, path), (model, summary) in BODIES.items():
        item = paths.get(path)
        if item is None or method not in item:
            continue
        op = item[method]
        op.setdefault("summary", summary)
        js = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in js.pop("$defs", {}).items():
            models.setdefault(name, sub)
        models[model.__name__] = js
        op["requestBody"] = {"required": (method, path) not in OPTIONAL_BODIES, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
    for path, item in paths.items():
        for method, op in item.items():
            _responses(path, method, op)


def _openapi_path(path: str) -> str:
    return path.replace(":path}", "}")


def _responses(path: str, method: str, op: dict[str, Any]) -> None:
    r = op.setdefault("responses", {})
    r.pop("422", None)  # never returned: validation errors are 400s
    ok = r.setdefault("200", {"description": "OK"})
    if path in STREAMING:
        ok["description"] = "The answer; with stream: true, server-sent events (text/event-stream)"
        ok["content"] = {"application/json": {"schema": {"type": "object"}},
                         "text/event-stream": {"schema": {"type": "string"}}}
    elif "content" not in ok:
        ok["content"] = {"application/json": {"schema": {"type": "object"}}}
    codes = ["400"]
    if path not in PUBLIC:
        codes += ["401", "403"]
        op["security"] = [{"bearer": []}, {"x-api-key": []}]
    else:
        op["security"] = []
    if "{" in path or path in MODEL_CALLS:
        codes.append("404")
    if "requestBody" in op:
        codes.append("413")
    if path in MODEL_CALLS:
        codes += ["409", "429", "502", "503", "504"]
        if path in ("/v1/chat/completions", "/v1/responses"):
            r.setdefault("202", {"description": "Edge only: queued for later (x-tiergate-defer: allow); a job id",
                                 "content": {"application/json": {"schema": {"type": "object"}}}})
    for c in codes:
        r.setdefault(c, {"$ref": f"#/components/responses/{c}"})
    r.setdefault("default", {"description": "Unexpected error (OpenAI-shaped)", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}})
