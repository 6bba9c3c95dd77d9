"""Property-based fuzzing of every route, driven by the served OpenAPI document
(hypothesis + hypothesis-jsonschema): bodies the schema allows, the same bodies with one
value swapped for arbitrary (deep, odd) JSON, arbitrary JSON and bytes, odd query
strings, with and without a key. Every answer must be below 500 and every error
OpenAI-shaped (Anthropic-shaped on the Messages door).

CI runs a bounded budget: ``FUZZ_EXAMPLES`` examples per route and strategy
(default 25), derandomized, no example database. Raise it locally for a longer hunt.
"""

from __future__ import annotations

import collections
import json
import os
import urllib.parse
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from tiergate.api.openapi import BODIES

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
MASTER = "sk-master-fuzz"
CAT = """
models:
  - name: m
    model: openai/fuzz-m
    adapter: openai-compatible
    tier: 1
    api_base: "{sim}"
    input_cost_per_mtok: 1
    output_cost_per_mtok: 2
    context_window: 1000000
    capabilities: [tools, vision, json, json_schema]
  - name: e
    model: openai/fuzz-e
    adapter: openai-compatible
    tier: 1
    api_base: "{sim}"
    input_cost_per_mtok: 1
    capabilities: [embeddings]
routing:
  default_model: m
"""
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=30)
#: Deep nesting (what used to answer 500 from 255 levels on).
DEEP = st.integers(min_value=2, max_value=1500).map(lambda n: json.loads("[" * n + "]" * n))
ODD_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["tier:1\n", "tier:9", "cascade:nope", "\x00", "a" * 300, "auto", "m", "e", "../../etc", "%0d%0a"])


@pytest.fixture
def gw(gateway_factory) -> tuple[str, dict[str, Any], dict[str, str]]:
    url, _ = gateway_factory(CAT, master_key=MASTER)
    spec = httpx.get(url + "/openapi.json", timeout=10).json()
    r = httpx.post(url + "/v1/keys", json={"tenant": "fuzz", "daily_budget_usd": 1000, "scopes": ["usage:ingest"]},
                   headers={"authorization": f"Bearer {MASTER}"}, timeout=10)
    return url, spec, {"master": MASTER, "key": r.json()["key"]}


def body_schema(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    op = spec["paths"][path][method]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    # hypothesis-jsonschema resolves "#/components/..." against the document it is given
    return {"$ref": ref, "components": spec["components"]}


def check(r: httpx.Response, path: str) -> None:
    assert r.status_code < 500, (r.status_code, path, r.text[:500])
    if r.status_code >= 400:
        body = r.json()
        if "/v1/messages" in path:
            assert body["type"] == "error" and {"type", "message"} <= set(body["error"]), body
        else:
            assert {"message", "type", "param", "code"} <= set(body["error"]), body


#: Every status the suite received (printed at the end of the module, with ``-s``).
STATUSES: collections.Counter[int] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Any:
    yield
    print(f"\nfuzz: {sum(STATUSES.values())} requests (FUZZ_EXAMPLES={EXAMPLES}), statuses "
          f"{dict(sorted(STATUSES.items()))}, 5xx: {sum(n for c, n in STATUSES.items() if c >= 500)}")


def send(url: str, method: str, path: str, who: str | None, keys: dict[str, str], **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {keys[who]}"} if who else {}
    headers.update(kw.pop("headers", {}))
    r = httpx.request(method.upper(), url + path, headers=headers, timeout=30, **kw)
    r.read()
    STATUSES[r.status_code] += 1
    return r


def _mutate(value: Any, path: list[Any], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict) and head in value:
        return {**value, head: _mutate(value[head], rest, new)}
    if isinstance(value, list) and isinstance(head, int) and head < len(value):
        return [*value[:head], _mutate(value[head], rest, new), *value[head + 1:]]
    return value


def _paths(value: Any, prefix: tuple = ()) -> list[list[Any]]:
    out = [list(prefix)]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            out += _paths(v, (*prefix, i))
    return out


def _real_path(path: str) -> str:
    return path.replace("{key_id}", "key_0000000000000000").replace("{response_id}", "resp_x").replace(
        "{model_id}", "m")


ROUTES = sorted(BODIES)


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_schema_bodies_never_5xx(gw, sim, method, path):
    url, spec, keys = gw
    if path not in spec["paths"]:
        pytest.skip(f"{path} is not served by this home")  # pragma: no cover - every route is in the core app
    strategy = from_schema(body_schema(spec, method, path))

    @FUZZ
    @given(body=strategy, who=st.sampled_from(["master", "key"]))
    def run(body: Any, who: str) -> None:
        check(send(url, method, _real_path(path), who, keys, json=body), path)

    run()


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_mutated_bodies_never_5xx(gw, sim, method, path):
    url, spec, keys = gw
    strategy = from_schema(body_schema(spec, method, path))

    @FUZZ
    @given(data=st.data(), body=strategy, who=st.sampled_from(["master", "key", None]))
    def run(data: st.DataObject, body: Any, who: str | None) -> None:
        where = data.draw(st.sampled_from(_paths(body)))
        new = data.draw(JSON | DEEP | ODD_TEXT)
        check(send(url, method, _real_path(path), who, keys, json=_mutate(body, where, new)), path)

    run()


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_arbitrary_payloads_never_5xx(gw, sim, method, path):
    url, _, keys = gw

    @FUZZ
    @given(payload=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()) | DEEP.map(
        lambda v: json.dumps(v).encode()), ctype=st.sampled_from(["application/json", "text/plain", None]))
    def run(payload: bytes, ctype: str | None) -> None:
        headers = {"content-type": ctype} if ctype else {}
        check(send(url, method, _real_path(path), "master", keys, content=payload, headers=headers), path)

    run()


GETS = [("get", "/v1/models"), ("get", "/v1/usage"), ("get", "/v1/budget"), ("get", "/v1/keys"),
        ("get", "/metrics"), ("get", "/health"), ("get", "/info")]


@pytest.mark.parametrize("method,path", GETS, ids=[p for _, p in GETS])
def test_odd_query_strings_never_5xx(gw, sim, method, path):
    url, _, keys = gw

    @FUZZ
    @given(params=st.dictionaries(st.sampled_from(["period", "tier", "model", "tenant", "key_id", "limit", "x"]),
                                  ODD_TEXT, max_size=4), who=st.sampled_from(["master", "key", None]))
    def run(params: dict[str, str], who: str | None) -> None:
        check(send(url, method, path, who, keys, params=params), path)

    run()


@pytest.mark.parametrize("path", ["/v1/keys/{key_id}", "/v1/models/{model_id}", "/v1/responses/{response_id}"])
def test_odd_path_parameters_never_5xx(gw, sim, path):
    url, _, keys = gw

    @FUZZ
    @given(value=ODD_TEXT.filter(lambda s: s and "/" not in s and "?" not in s and "#" not in s),
           method=st.sampled_from(["GET", "DELETE", "PATCH", "PUT"]))
    def run(value: str, method: str) -> None:
        p = path.split("{")[0] + urllib.parse.quote(value, safe="")
        check(send(url, method.lower(), p, "master", keys, json={}), path)

    run()


def test_the_openapi_document_is_complete_and_true(gw):
    url, spec, _ = gw
    ops = [(p, m, o) for p, item in spec["paths"].items() for m, o in item.items()]
    assert {(m, p) for m, p in BODIES} <= {(m, p) for p, m, _ in ops}
    for p, m, o in ops:
        assert "422" not in o["responses"], (m, p)
        assert "400" in o["responses"] and "default" in o["responses"], (m, p)
        if m in ("post", "patch") and (m, p) in BODIES:
            assert "requestBody" in o, (m, p)
    assert spec["paths"]["/health"]["get"]["security"] == []
    assert spec["paths"]["/v1/chat/completions"]["post"]["security"]
    assert "bearer" in spec["components"]["securitySchemes"]
    # 405 names every method the path allows
    r = httpx.put(url + "/v1/keys/key_0000000000000000", headers={"authorization": f"Bearer {MASTER}"})
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, PATCH"
