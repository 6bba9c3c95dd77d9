"""The exact cache on DynamoDB, on moto server and on dynalite: written once (concurrent
stores of one key leave one winner and raise nothing), expired entries absent and
replaceable, refresh only forward, entries over the item limit skipped; and the whole
path through the gateway over HTTP with the ``openai`` SDK."""

from __future__ import annotations

import asyncio
import time
import uuid

import openai
import pytest

from tests.support.gateway import serve_app
from tiergate.cache.dynamodb import MAX_ITEM_BYTES, DynamoExactStore, create_table
from tiergate.cache.store import Entry
from tiergate.compose import build_app
from tiergate.config import catalog as catalog_mod
from tiergate.settings import Settings
from tiergate.stores.dynamodb import make_client


@pytest.fixture(params=["moto", "dynalite"])
def endpoint(request, aws_env) -> str:
    return request.getfixturevalue("moto_server" if request.param == "moto" else "dynalite")


@pytest.fixture
def store(endpoint):
    client = make_client(endpoint)
    name = "cache-" + uuid.uuid4().hex[:8]
    create_table(client, name)
    s = DynamoExactStore(client, name)
    yield s
    asyncio.run(s.aclose())


def _entry(key: str, at: float, *, ttl: float = 100, text: str = "Paris.") -> tuple[Entry, bytes]:
    e = Entry(key, "acme", {"choices": [{"message": {"role": "assistant", "content": text},
                                         "finish_reason": "stop"}]}, "m", 0.002, at, at + ttl)
    return e, e.encode()


async def test_written_once_expiring_and_refreshed_forward(store):
    now = time.time()
    e1, b1 = _entry("k1", now)
    assert await store.put(e1, b1) is True
    e2, b2 = _entry("k1", now + 1, text="other")
    assert await store.put(e2, b2) is False
    got = await store.get("k1", now=now + 2)
    assert got == e1
    assert await store.get("k1", now=now + 101) is None          # expired (TTL deletes lazily)
    gone, gb = _entry("k2", now - 200)                            # an expired entry...
    assert await store.put(gone, gb) is True
    fresh, fb = _entry("k2", now)
    assert await store.put(fresh, fb) is True                     # ...is replaced by a new one
    older, ob = _entry("k2", now - 50)
    assert await store.put(older, ob, replace=True) is False      # refresh never goes back in time
    newer, nb = _entry("k2", now + 5, text="refreshed")
    assert await store.put(newer, nb, replace=True) is True
    assert (await store.get("k2", now=now + 6)).response["choices"][0]["message"]["content"] == "refreshed"


async def test_concurrent_stores_of_one_key_one_wins_no_error(store):
    now = time.time()
    entries = [_entry("race", now + i / 1000, text=f"answer {i}") for i in range(16)]
    won = await asyncio.gather(*(store.put(e, b) for e, b in entries))
    assert sum(won) == 1
    winner = entries[won.index(True)][0]
    assert await store.get("race", now=now + 1) == winner


CAT = """
models:
  - {name: m, model: openai/ddb-cache-m, adapter: openai-compatible, tier: 1, api_base: "{sim}",
     input_cost_per_mtok: 1, output_cost_per_mtok: 2}
cache:
  exact: {ttl_s: 600, max_entry_bytes: 1048576}
"""


def test_the_gateway_caches_on_dynamodb_and_skips_entries_over_the_item_limit(sim, dynalite_tables, tmp_path):
    settings = Settings(environment="test", master_key="sk-m", data_dir=tmp_path, **dynalite_tables)
    cat = catalog_mod.parse(CAT.replace("{sim}", sim.openai_base), source="test")
    with serve_app(build_app(settings, cat)) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="sk-m", max_retries=0)
        q = [{"role": "user", "content": "What is the capital of France?"}]
        first = c.chat.completions.with_raw_response.create(model="m", messages=q, temperature=0)
        assert first.headers["x-tiergate-cache"] == "stored"
        second = c.chat.completions.with_raw_response.create(model="m", messages=q, temperature=0)
        assert second.headers["x-tiergate-cache"] == "hit"
        assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
        # An answer over DynamoDB's item limit is served, not stored, and says why.
        big = [{"role": "user", "content": "Write a very long answer."}]
        sim.script("ddb-cache-m", {"content": "x" * (MAX_ITEM_BYTES + 1000), "count": 2})
        r = c.chat.completions.with_raw_response.create(model="m", messages=big, temperature=0)
        assert r.headers["x-tiergate-cache"] == "miss" and "entry limit" in r.headers["x-tiergate-cache-reason"]
        again = c.chat.completions.with_raw_response.create(model="m", messages=big, temperature=0)
        assert again.headers["x-tiergate-cache"] == "miss"
        assert len(again.parse().choices[0].message.content) == MAX_ITEM_BYTES + 1000
    assert len(sim.requests(model="ddb-cache-m")) == 3
