"""Stored Responses API responses on both stores (SQLite, DynamoDB on dynalite): write-once,
per key (never across keys or tenants), TTL, delete."""

from __future__ import annotations

import time

import pytest

from tiergate.errors import NotFound
from tiergate.limits.admission import Principal
from tiergate.limits.stored_responses import ResponseStore
from tiergate.stores.base import ConditionFailed

ALICE = Principal(key_id="key_alice", tenant="acme")
BOB = Principal(key_id="key_bob", tenant="globex")
ALICE2 = Principal(key_id="key_alice2", tenant="acme")


def resp(rid: str) -> dict:
    return {"id": rid, "object": "response", "output": [{"type": "message", "content": [
        {"type": "output_text", "text": "hi", "annotations": []}]}], "temperature": 0.7, "usage": None}


async def test_put_get_delete_per_key(store):
    rs = ResponseStore(store, ttl_s=3600)
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hi", "tool_calls": None}]
    await rs.put(ALICE, resp("resp_1"), history)
    rec = await rs.get(ALICE, "resp_1")
    assert rec["response"] == resp("resp_1") and rec["history"] == history and rec["tenant"] == "acme"
    for other in (BOB, ALICE2):
        with pytest.raises(NotFound):
            await rs.get(other, "resp_1")
        with pytest.raises(NotFound):
            await rs.delete(other, "resp_1")
    await rs.delete(ALICE, "resp_1")
    with pytest.raises(NotFound):
        await rs.get(ALICE, "resp_1")
    with pytest.raises(NotFound):
        await rs.delete(ALICE, "resp_1")


async def test_write_once(store):
    rs = ResponseStore(store, ttl_s=3600)
    await rs.put(ALICE, resp("resp_2"), [])
    with pytest.raises(ConditionFailed):
        await rs.put(ALICE, {**resp("resp_2"), "temperature": 0.1}, [])
    assert (await rs.get(ALICE, "resp_2"))["response"]["temperature"] == 0.7


async def test_expired_response_is_gone(store):
    past = time.time() - 7200
    rs = ResponseStore(store, ttl_s=60, clock=lambda: past)
    await rs.put(ALICE, resp("resp_3"), [])
    with pytest.raises(NotFound):
        await ResponseStore(store, ttl_s=60).get(ALICE, "resp_3")
    await ResponseStore(store, ttl_s=60).put(ALICE, resp("resp_3"), [])  # an expired record does not block the id
