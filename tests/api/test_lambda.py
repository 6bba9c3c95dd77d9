"""The Lambda entry point invoked with real API Gateway event shapes (REST v1 and HTTP
API v2), the provider reached over real HTTP (the simulator)."""

from __future__ import annotations

import base64
import importlib
import json
import sys

import pytest

CATALOG = """
models:
  - {name: fast, model: openai/fast-l, adapter: openai-compatible, tier: 1, api_base: "%s",
     input_cost_per_mtok: 1, output_cost_per_mtok: 2}
"""


@pytest.fixture
def handler(sim, tmp_path, monkeypatch):
    cfg = tmp_path / "catalog.yaml"
    cfg.write_text(CATALOG % sim.openai_base)
    monkeypatch.setenv("TIERGATE_CONFIG", str(cfg))
    monkeypatch.setenv("TIERGATE_STORE", "memory")
    monkeypatch.setenv("TIERGATE_MASTER_KEY", "sk-lambda")
    monkeypatch.setenv("TIERGATE_DATA_DIR", str(tmp_path / "data"))
    sys.modules.pop("tiergate.handlers.api", None)
    mod = importlib.import_module("tiergate.handlers.api")
    yield mod.handler
    close_app(mod.app)
    sys.modules.pop("tiergate.handlers.api", None)


def close_app(app) -> None:
    """Close the pooled provider clients on the loop Mangum ran them on."""
    import asyncio
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop = asyncio.get_event_loop()
    loop.run_until_complete(app.state.services.registry.aclose())
    loop.run_until_complete(app.state.services.admission.aclose())


class Ctx:
    function_name = "tiergate-api"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:tiergate-api"
    aws_request_id = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def rest_v1(method: str, path: str, body: dict | None, headers: dict[str, str]) -> dict:
    return {
        "resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123", "resourcePath": "/{proxy+}", "httpMethod": method,
            "extendedRequestId": "x=", "requestTime": "22/Nov/2026:12:00:00 +0000", "path": "/prod" + path,
            "accountId": "123456789012", "protocol": "HTTP/1.1", "stage": "prod", "domainPrefix": "api",
            "requestTimeEpoch": 1795351200000, "requestId": "r-1", "identity": {"sourceIp": "203.0.113.9",
                                                                                  "userAgent": "openai-python"},
            "domainName": "api.example.com", "apiId": "api",
        },
        "body": json.dumps(body) if body is not None else None, "isBase64Encoded": False,
    }


def http_v2(method: str, path: str, body: dict | None, headers: dict[str, str], b64: bool = False) -> dict:
    raw = json.dumps(body) if body is not None else None
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com", "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9",
                     "userAgent": "openai-python"},
            "requestId": "r-2", "routeKey": "$default", "stage": "$default", "time": "22/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1795351200000,
        },
        "body": base64.b64encode(raw.encode()).decode() if (b64 and raw) else raw, "isBase64Encoded": b64,
    }


AUTH = {"authorization": "Bearer sk-lambda", "content-type": "application/json"}
CHAT = {"model": "fast", "messages": [{"role": "user", "content": "from lambda"}]}


@pytest.mark.parametrize("shape", [rest_v1, http_v2])
def test_chat_completion_through_api_gateway_events(handler, sim, shape):
    out = handler(shape("POST", "/v1/chat/completions", CHAT, AUTH), Ctx())
    assert out["statusCode"] == 200
    body = json.loads(out["body"])
    assert body["choices"][0]["message"]["content"] == "echo: from lambda [model=fast-l]"
    headers = {k.lower(): v for k, v in out["headers"].items()}
    assert headers["x-tiergate-model"] == "fast" and float(headers["x-tiergate-cost-usd"]) > 0
    assert len(sim.requests(model="fast-l")) == 1


def test_base64_body_and_errors(handler):
    out = handler(http_v2("POST", "/v1/chat/completions", CHAT, AUTH, b64=True), Ctx())
    assert out["statusCode"] == 200
    out = handler(rest_v1("POST", "/v1/chat/completions", CHAT, {"content-type": "application/json"}), Ctx())
    assert out["statusCode"] == 401 and json.loads(out["body"])["error"]["code"] == "invalid_api_key"
    ev = rest_v1("POST", "/v1/chat/completions", None, AUTH)
    ev["body"] = "{oops"
    out = handler(ev, Ctx())
    assert out["statusCode"] == 400 and json.loads(out["body"])["error"]["type"] == "invalid_request_error"


def test_health_and_models(handler):
    out = handler(http_v2("GET", "/health", None, {}), Ctx())
    assert out["statusCode"] == 200 and json.loads(out["body"])["available_models"] == ["fast"]
    out = handler(rest_v1("GET", "/v1/models", None, AUTH), Ctx())
    assert "fast" in [m["id"] for m in json.loads(out["body"])["data"]]


def test_prewarm_imports_litellm_only_under_snapstart(tmp_path, sim):
    """Under SnapStart init is snapshotted once, so the LiteLLM adapter is built then;
    otherwise it stays lazy (``import litellm`` takes seconds)."""
    from tiergate.compose import build_app, prewarm
    from tiergate.config import catalog as catalog_mod
    from tiergate.settings import Settings

    cat = catalog_mod.parse(f"""
models:
  - {{name: a, model: openai/a, adapter: openai-compatible, tier: 1, api_base: "{sim.openai_base}"}}
  - {{name: b, model: anthropic/b, adapter: litellm, tier: 2, api_base: "{sim.url}"}}
""", source="t")
    for snapstart in (False, True):
        app = build_app(Settings(data_dir=tmp_path, store="memory"), cat)
        prewarm(app.state.services, snapstart=snapstart)
        built = app.state.services.registry.built()
        assert built == ({"openai-compatible", "litellm"} if snapstart else {"openai-compatible"})
        if snapstart:
            assert app.state.services.registry.get("litellm").loaded


def test_every_door_through_the_lambda_handler(handler, sim):
    """Mangum (the buffered function) serves each door in its own shape; x-api-key works."""
    msg = handler(rest_v1("POST", "/v1/messages", {"model": "fast", "max_tokens": 8, "messages": [
        {"role": "user", "content": "hi"}]}, {"content-type": "application/json", "x-api-key": "sk-lambda",
                                               "anthropic-version": "2023-06-01"}), Ctx())
    assert msg["statusCode"] == 200 and json.loads(msg["body"])["type"] == "message"
    bad = handler(rest_v1("POST", "/v1/messages", {"model": "fast", "messages": []},
                          {"content-type": "application/json", "x-api-key": "sk-lambda"}), Ctx())
    assert bad["statusCode"] == 400 and json.loads(bad["body"])["type"] == "error"
    resp = handler(rest_v1("POST", "/v1/responses", {"model": "fast", "input": "hi"}, AUTH), Ctx())
    rid = json.loads(resp["body"])["id"]
    got = handler(rest_v1("GET", f"/v1/responses/{rid}", None, AUTH), Ctx())
    assert got["statusCode"] == 200 and json.loads(got["body"])["output"][0]["type"] == "message"
    legacy = handler(rest_v1("POST", "/v1/completions", {"model": "fast", "prompt": "hi"}, AUTH), Ctx())
    assert json.loads(legacy["body"])["object"] == "text_completion"
