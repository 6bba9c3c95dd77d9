"""Malformed bodies at every front door get a 4xx in that door's error shape, never a 500:
OpenAI's ``{"error": {...}}`` on the OpenAI doors, Anthropic's ``{"type": "error", ...}``
on ``/v1/messages`` (and ``count_tokens``)."""

from __future__ import annotations

import httpx
import pytest

DOORS = ["/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/responses", "/v1/completions",
         "/v1/embeddings"]
# Raw bodies every door refuses: not JSON, empty, not an object, the wrong shape entirely.
RAW = [b"{not json", b"", b"[1, 2]", b'"text"', b"null", b'{"model": 5}', b'{"model": "fast", "messages": 7}',
       b'{"model": "fast", "input": {"a": 1}, "prompt": 3, "messages": [{"role": "robot"}]}',
       b'{"model": "fast", "max_tokens": "many", "messages": [{"role": "user", "content": "x"}]}',
       b'{"model": "tier:99", "messages": [{"role": "user", "content": "x"}], "input": "x", "prompt": "x",'
       b' "max_tokens": 5}']


def _shape_ok(path: str, body: dict) -> bool:
    if path.startswith("/v1/messages"):
        return body.get("type") == "error" and isinstance(body["error"].get("message"), str) and body["error"]["type"]
    return isinstance(body["error"].get("message"), str) and body["error"]["type"]


@pytest.mark.parametrize("path", DOORS)
@pytest.mark.parametrize("raw", RAW, ids=range(len(RAW)))
def test_malformed_body_is_a_4xx_in_the_doors_shape(gw, path, raw):
    r = httpx.post(gw[0] + path, content=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert _shape_ok(path, r.json()), r.text


@pytest.mark.parametrize("path", DOORS)
def test_oversized_body_is_413_in_the_doors_shape(gateway_factory, monkeypatch, path):
    from tests.api.conftest import CATALOG

    monkeypatch.setenv("SIM_KEY_A", "sk-sim-a")
    url, _ = gateway_factory(CATALOG, max_body_bytes=1000)
    r = httpx.post(url + path, content=b'{"input": "' + b"x" * 2000 + b'"}', headers={"content-type": "application/json"})
    assert r.status_code == 413 and _shape_ok(path, r.json())


@pytest.mark.parametrize("path", DOORS)
def test_wrong_method_and_bad_key_in_the_doors_shape(gateway_factory, monkeypatch, path):
    from tests.api.conftest import CATALOG

    monkeypatch.setenv("SIM_KEY_A", "sk-sim-a")
    url, _ = gateway_factory(CATALOG, master_key="sk-master-e")
    r = httpx.get(url + path)
    assert r.status_code == 405 and _shape_ok(path, r.json())
    r = httpx.post(url + path, json={}, headers={"x-api-key": "wrong"})
    assert r.status_code == 401 and _shape_ok(path, r.json())
    if path.startswith("/v1/messages"):
        assert r.json()["error"]["type"] == "authentication_error"
