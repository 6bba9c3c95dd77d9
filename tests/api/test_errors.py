"""Bad input gets OpenAI-shaped errors with the right status; never a 500 or a 422."""

from __future__ import annotations

import httpx
import openai
import pytest


def _post(url: str, content: bytes | str, **kw) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", content=content,
                      headers={"content-type": "application/json", **kw.pop("headers", {})}, **kw)


def _err(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


@pytest.mark.parametrize("payload, param_part", [
    (b"{not json", None),
    (b"[1,2]", None),
    (b"", None),
    (b'{"model": "fast"}', "messages"),
    (b'{"model": "fast", "messages": []}', "messages"),
    (b'{"model": "fast", "messages": [{"role": "wizard", "content": "x"}]}', "messages.0.role"),
    (b'{"model": "fast", "messages": [{"role": "user", "content": "x"}], "n": 2}', "n"),
    (b'{"model": "fast", "messages": [{"role": "user", "content": "x"}], "temperature": 7}', "temperature"),
    (b'{"model": "fast", "messages": [{"role": "user", "content": "x"}], "max_tokens": "lots"}', "max_tokens"),
    (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', "model"),
    (b'{"model": "fast", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}', "tools"),
])
def test_malformed_requests_are_400(gw, payload, param_part):
    r = _post(gw[0], payload)
    assert r.status_code == 400, r.text
    e = _err(r)
    assert e["type"] == "invalid_request_error"
    if param_part:
        assert e["param"] is not None and e["param"].startswith(param_part)
    assert "pydantic" not in e["message"] and "errors.pydantic.dev" not in r.text


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="gpt-99", messages=[{"role": "user", "content": "x"}])
    assert ei.value.body["code"] == "model_not_found"


def test_bad_tier_and_cascade_names_are_404(gw):
    for model in ("tier:9", "tier:x", "cascade:nope"):
        r = _post(gw[0], f'{{"model": "{model}", "messages": [{{"role": "user", "content": "x"}}]}}')
        assert r.status_code == 404 and _err(r)["code"] == "model_not_found", model


def test_body_too_large_is_413(gateway_factory):
    url, _ = gateway_factory("""
models:
  - {name: m, model: openai/m, adapter: openai-compatible, tier: 1, api_base: "{sim}"}
""", max_body_bytes=1000)
    big = '{"model": "m", "messages": [{"role": "user", "content": "' + "x" * 5000 + '"}]}'
    r = _post(url, big)
    assert r.status_code == 413 and _err(r)["code"] == "request_too_large"


def test_prompt_larger_than_every_window_is_400_context_length(gateway_factory):
    url, _ = gateway_factory("""
models:
  - {name: small, model: openai/small, adapter: openai-compatible, tier: 1, api_base: "{sim}", context_window: 100}
""")
    r = _post(url, '{"model": "small", "messages": [{"role": "user", "content": "' + "word " * 400 + '"}]}')
    assert r.status_code == 400 and _err(r)["code"] == "context_length_exceeded"


def test_master_key_required_when_configured(gateway_factory):
    url, _ = gateway_factory("""
models:
  - {name: m, model: openai/m, adapter: openai-compatible, tier: 1, api_base: "{sim}"}
""", master_key="sk-master")
    bad = openai.OpenAI(base_url=url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as ei:
        bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert ei.value.body["code"] == "invalid_api_key"
    r = httpx.post(url + "/v1/chat/completions", json={"model": "m", "messages": []})
    assert r.status_code == 401  # auth is checked before the body
    good = openai.OpenAI(base_url=url + "/v1", api_key="sk-master", max_retries=0)
    assert good.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}]).choices


def test_unknown_route_and_method_are_openai_shaped(gw):
    r = httpx.get(gw[0] + "/v1/nope")
    assert r.status_code == 404 and _err(r)["type"] == "invalid_request_error"
    r = httpx.get(gw[0] + "/v1/chat/completions")
    assert r.status_code == 405 and _err(r)["code"] == "method_not_allowed"


def test_generate_validation_is_400_not_422(gw):
    r = httpx.post(gw[0] + "/generate", json={"prompt": "", "task_type": "dance"})
    assert r.status_code == 400
    assert "task_type" in _err(r)["message"] and "prompt" in _err(r)["message"]


def test_unknown_path_404_says_which_doors_exist(gw):
    # Finding 9: a client on a wrong path (a base URL without /v1, a typo) learns where to go.
    for path in ("/chat/completions", "/v1/chat/completion"):
        r = httpx.post(gw[0] + path, json={"model": "auto", "messages": []}, timeout=10)
        assert r.status_code == 404
        err = r.json()["error"]
        assert err["code"] == "not_found" and f"No endpoint POST {path}" in err["message"]
        assert "POST /v1/chat/completions" in err["message"] and "/docs" in err["message"]
        assert "GET /v1/models" in err["message"] and "POST /v1/route" in err["message"]


def test_docs_list_the_chat_completions_door(gw, client):
    spec = httpx.get(gw[0] + "/openapi.json", timeout=10).json()
    assert "post" in spec["paths"]["/v1/chat/completions"]
    assert "messages" in str(spec["components"]["schemas"]["ChatRequest"])
    # ... and the hot path still answers it (the documented twin is never reached).
    r = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content
