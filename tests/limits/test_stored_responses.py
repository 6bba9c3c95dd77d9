"""Stored Responses API responses on both stores (SQLite, DynamoDB on dynalite): write-once,
per key (never across keys or tenants), TTL, delete."""

from __future__ import annotations

import time

import pytest

from tiergate.errors import InvalidRequest, NotFound
from tiergate.limits.admission import Principal
from tiergate.limits.stored_responses import ITEM_LIMIT_BYTES, RECORD_BUDGET, Kept, ResponseStore, item_size
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


def turn(i: int, size: int) -> list[dict]:
    return [{"role": "user", "content": f"question {i} " + "q" * size},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": f"call_{i}", "content": "r" * 100},
            {"role": "assistant", "content": f"answer {i}"}]


async def test_a_conversation_over_the_item_limit_keeps_its_newest_turns(store):
    """DynamoDB refuses items over 400 KB; every store keeps the same bound: the oldest whole
    turns go (a tool call never without its result), the first kept message says so, and the
    record fits the limit as DynamoDB counts it."""
    rs = ResponseStore(store, ttl_s=3600)
    history = [m for i in range(6) for m in turn(i, 100_000)]  # ~600 KB
    kept = await rs.put(ALICE, resp("resp_big"), history)
    assert kept.stored and kept.history and kept.dropped % 4 == 0 and 0 < kept.dropped < len(history)
    rec = await rs.get(ALICE, "resp_big")
    assert rec["history_dropped"] == kept.dropped
    got = await rs.history(ALICE, "resp_big")
    assert got[1:] == history[kept.dropped + 1:]
    assert got[0]["role"] == "user" and got[0]["content"].startswith(
        f"[tiergate: the {kept.dropped} oldest messages of this conversation were dropped")
    assert got[0]["content"].endswith(history[kept.dropped]["content"])
    assert got[-4]["content"].startswith("question 5 ")  # the newest turn is whole
    assert item_size(rec) <= ITEM_LIMIT_BYTES
    assert item_size({**rec, "history": history[kept.dropped - 4:]}) > RECORD_BUDGET  # one turn more would not fit

    small = [{"role": "user", "content": "hi"}]
    assert await rs.put(ALICE, resp("resp_small"), small) == Kept()  # under the limit: untouched
    assert await rs.history(ALICE, "resp_small") == small


async def test_a_turn_too_large_to_keep(store):
    """A newest turn alone over the limit: the response is kept, its conversation is not, and a
    follow-up naming it is a 400 that says why; a response object over the limit is not stored."""
    rs = ResponseStore(store, ttl_s=3600)
    kept = await rs.put(ALICE, resp("resp_huge_turn"), turn(0, 500_000))
    assert kept == Kept(dropped=4, history=False)
    assert (await rs.get(ALICE, "resp_huge_turn"))["response"] == resp("resp_huge_turn")
    with pytest.raises(InvalidRequest) as ei:
        await rs.history(ALICE, "resp_huge_turn")
    assert "400 KB" in ei.value.message and ei.value.param == "previous_response_id"
    huge = {**resp("resp_huge"), "output": [{"type": "message", "content": [
        {"type": "output_text", "text": "a" * 450_000, "annotations": []}]}]}
    assert await rs.put(ALICE, huge, []) == Kept(dropped=0, history=False, stored=False)
    with pytest.raises(NotFound):
        await rs.get(ALICE, "resp_huge")


async def test_the_dropped_note_counts_every_turns_drops(store):
    rs = ResponseStore(store, ttl_s=3600)
    history = [m for i in range(6) for m in turn(i, 100_000)]
    first = await rs.put(ALICE, resp("resp_t1"), history)
    later = await rs.history(ALICE, "resp_t1") + turn(6, 100_000)
    second = await rs.put(ALICE, resp("resp_t2"), later)
    assert second.dropped > 0
    got = await rs.history(ALICE, "resp_t2")
    assert got[0]["content"].startswith(f"[tiergate: the {first.dropped + second.dropped} oldest messages")
    assert got[-4]["content"].startswith("question 6 ")
