"""``/v1/embeddings`` through the official ``openai`` SDK over real HTTP: the native adapter,
LiteLLM and the packaged local embedder; float and base64; ``dimensions``; priced,
recorded and listed in ``GET /v1/models``."""

from __future__ import annotations

import base64
import math
import struct

import httpx
import openai
import pytest

from tests.api.conftest import CATALOG
from tests.support.upstream import embedding_vector

EMBEDDERS = """
  - name: embed-native
    model: openai/emb-1
    adapter: openai-compatible
    tier: 1
    api_base: "{sim}"
    api_key_env: SIM_KEY_A
    input_cost_per_mtok: 0.02
    capabilities: [embeddings]
  - name: embed-litellm
    model: openai/emb-2
    adapter: litellm
    tier: 2
    api_base: "{sim}"
    api_key_env: SIM_KEY_A
    input_cost_per_mtok: 0.13
    capabilities: [embeddings]
  - name: local-embed
    model: bundled:wordllama-l2-supercat
    adapter: wordllama
    tier: 0
    capabilities: [embeddings]
    input_cost_per_mtok: 0
    output_cost_per_mtok: 0
"""
EMBED_CATALOG = CATALOG.replace("aliases:", EMBEDDERS.strip("\n") + "\naliases:", 1)


@pytest.fixture
def egw(gateway_factory, monkeypatch):
    monkeypatch.setenv("SIM_KEY_A", "sk-sim-a")
    return gateway_factory(EMBED_CATALOG, with_plugins=True)


@pytest.fixture
def ec(egw):
    return openai.OpenAI(base_url=egw[0] + "/v1", api_key="x", max_retries=0)


@pytest.mark.parametrize("model", ["embed-native", "embed-litellm"])
def test_cloud_adapters_embed(ec, sim, model):
    raw = ec.embeddings.with_raw_response.create(model=model, input=["hello world", "bye"], encoding_format="float",
                                                 dimensions=16)
    e = raw.parse()
    assert [d.index for d in e.data] == [0, 1]
    # `dimensions` goes where the model takes it: LiteLLM drops it for a model it does not
    # know to support it (drop_params), the native adapter forwards it.
    dims = 16 if model == "embed-native" else 8
    assert e.data[0].embedding == pytest.approx(embedding_vector("hello world", dims), abs=1e-6)
    assert e.usage.prompt_tokens == e.usage.total_tokens > 0
    price = 0.02 if model == "embed-native" else 0.13
    assert float(raw.headers["x-tiergate-cost-usd"]) == pytest.approx(e.usage.prompt_tokens * price / 1e6, abs=1e-12)
    assert raw.headers["x-tiergate-model"] == model
    (req,) = sim.requests(path="/v1/embeddings")
    assert req["body"]["input"] == ["hello world", "bye"] and req["body"].get("dimensions") == (16 if dims == 16 else None)
    assert req["headers"]["authorization"] == "Bearer sk-sim-a"


def test_base64_is_what_the_sdk_asks_by_default(ec):
    default = ec.embeddings.create(model="embed-native", input="hello world")  # SDK sends base64, decodes
    assert default.data[0].embedding == pytest.approx(embedding_vector("hello world", 8), abs=1e-6)
    r = httpx.post(str(ec.base_url) + "embeddings", json={"model": "embed-native", "input": "hi",
                                                          "encoding_format": "base64"})
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    assert list(struct.unpack("<8f", raw)) == pytest.approx(embedding_vector("hi", 8), abs=1e-6)


def test_local_embedder_is_semantic_and_truncates(ec):
    e = ec.embeddings.create(model="local-embed", encoding_format="float", input=[
        "how do I reset my password", "I forgot my password, how can I reset it", "best pizza in Naples"])
    a, b, c = (d.embedding for d in e.data)
    assert len(a) == 256 and math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-4)
    dot = lambda u, v: sum(x * y for x, y in zip(u, v, strict=True))  # noqa: E731
    assert dot(a, b) > 0.6 > 0.3 > dot(a, c)
    short = ec.embeddings.create(model="local-embed", input="hello", dimensions=64, encoding_format="float")
    assert len(short.data[0].embedding) == 64
    with pytest.raises(openai.BadRequestError):
        ec.embeddings.create(model="local-embed", input="hello", dimensions=512)
    with pytest.raises(openai.BadRequestError):
        ec.embeddings.create(model="local-embed", input=[[1, 2, 3]])  # token arrays need a cloud model


def test_auto_picks_the_cheapest_embedder_and_chat_never_does(ec):
    raw = ec.embeddings.with_raw_response.create(model="auto", input="x")
    assert raw.headers["x-tiergate-model"] == "local-embed"
    chat = ec.chat.completions.with_raw_response.create(model="tier:1", messages=[{"role": "user", "content": "hi"}])
    assert chat.headers["x-tiergate-model"] in ("fast", "fast-b")
    with pytest.raises(openai.BadRequestError) as ei:
        ec.chat.completions.create(model="embed-native", messages=[{"role": "user", "content": "hi"}])
    assert "embedding model" in ei.value.message
    with pytest.raises(openai.BadRequestError) as ei:
        ec.embeddings.create(model="fast", input="x")
    assert "does not create embeddings" in ei.value.message


def test_models_list_shows_which_models_embed(ec):
    models = {m.id: m for m in ec.models.list().data}
    assert models["embed-native"].model_extra["embeddings"] is True
    assert models["local-embed"].model_extra["embeddings"] is True
    assert models["fast"].model_extra["embeddings"] is False
    assert "embeddings" in models["embed-litellm"].model_extra["capabilities"]


@pytest.mark.parametrize("body", [{"model": "embed-native"}, {"model": "embed-native", "input": []},
                                  {"model": "embed-native", "input": ""}, {"model": "embed-native", "input": [""]},
                                  {"model": "embed-native", "input": "x", "encoding_format": "hex"},
                                  {"model": "embed-native", "input": "x", "dimensions": 0},
                                  {"model": "cascade", "input": "x"}])
def test_malformed_bodies_are_400s(ec, body):
    r = httpx.post(str(ec.base_url) + "embeddings", json=body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
