"""The record-store contract, run identically against SQLite and DynamoDB (dynalite)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tiergate.stores.base import (
    Bump,
    Cond,
    ConditionFailed,
    Correction,
    CounterKey,
    Rejected,
    Settlement,
)

K1 = CounterKey("budgets", "b#key#k1", "d2030-01-01")
K2 = CounterKey("budgets", "b#global", "d2030-01-01")
R1 = CounterKey("ratelimits", "rl#key#k1#req", "100")
FAR = int(time.time()) + 3600


def bump(key, amount, limit=None, hold=None, hold_exp=None):
    return Bump(key, amount, None if limit is None else limit - amount, FAR, hold, hold_exp)


async def test_bump_adds_and_respects_limit(store):
    assert await store.bump([bump(K1, 30, 100, "h1"), bump(K2, 30, 1000, "h1")], now=0) == [30, 30]
    assert await store.bump([bump(K1, 70, 100, "h2")], now=0) == [100]
    with pytest.raises(Rejected) as e:
        await store.bump([bump(K1, 1, 100, "h3")], now=0)
    assert e.value.index == 0 and e.value.used == 100
    st = await store.read_counters([K1, K2])
    assert st[K1].used == 100 and st[K1].reserved == 100
    assert set(st[K1].holds) == {"h1", "h2"} and st[K1].holds["h1"][0] == 30


async def test_bump_is_all_or_nothing(store):
    await store.bump([bump(K2, 90, 100, "a")], now=0)
    with pytest.raises(Rejected) as e:
        await store.bump([bump(K1, 20, 100, "b"), bump(K2, 20, 100, "b")], now=0)
    assert e.value.index == 1
    st = await store.read_counters([K1, K2])
    # the first bump was undone (or never applied) and its hold is gone
    assert K1 not in st or (st[K1].used == 0 and st[K1].holds == {})
    assert st[K2].used == 90 and set(st[K2].holds) == {"a"}


async def test_settle_replaces_hold_by_actual_once(store):
    await store.bump([bump(K1, 50, 100, "h1")], now=0)
    rec = {"pk": "k1", "sk": "2030#r1", "tenant": "acme", "ts": "2030-01-01T00:00:00", "cost": 12}
    s = Settlement(K1, "h1", held=50, actual=12)
    await store.settle([s], [], [("usage", rec)])
    await store.settle([s], [], [("usage", rec)])  # a replay changes nothing
    st = (await store.read_counters([K1]))[K1]
    assert (st.used, st.reserved, st.holds) == (12, 0, {})
    assert await store.query("usage", "k1") == [rec]


async def test_reclaim_releases_only_expired_holds(store):
    now = int(time.time())
    await store.bump([bump(K1, 40, 100, "old", now - 5), bump(K2, 40, 100, "old", now - 5)], now=now)
    await store.bump([bump(K1, 10, 100, "new", now + 600)], now=now)
    assert await store.reclaim(K1, now=now) == 40
    st = (await store.read_counters([K1]))[K1]
    assert (st.used, st.reserved, set(st.holds)) == (10, 10, {"new"})
    # settling a reclaimed hold still counts its actual cost, once
    await store.settle([Settlement(K1, "old", held=40, actual=7)])
    assert (await store.read_counters([K1]))[K1].used == 17


async def test_release_and_correction(store):
    b = [bump(R1, 1, 5), bump(K1, 9, 100, "x")]
    await store.bump(b, now=0)
    await store.settle([], [Correction(R1, 4)])
    assert (await store.read_counters([R1]))[R1].used == 5
    await store.release(b)
    st = await store.read_counters([R1, K1])
    assert st[R1].used == 4 and st[K1].used == 0 and st[K1].holds == {}


async def test_concurrent_bumps_never_pass_the_limit(store):
    async def one(i):
        try:
            await store.bump([bump(K1, 1, 25, f"h{i}")], now=0)
            return 1
        except Rejected:
            return 0
    admitted = sum(await asyncio.gather(*(one(i) for i in range(80))))
    st = (await store.read_counters([K1]))[K1]
    assert admitted == 25 and st.used == 25 and len(st.holds) == 25


async def test_records_conditions(store):
    rec = {"pk": "p", "sk": "s", "status": "a", "n": 1.5, "tags": ["x"], "m": {"k": None}}
    await store.put("keys", rec, Cond(absent=True))
    with pytest.raises(ConditionFailed):
        await store.put("keys", rec, Cond(absent=True))
    with pytest.raises(ConditionFailed):
        await store.put("keys", {**rec, "status": "b"}, Cond(equals={"status": "zzz"}))
    await store.put("keys", {**rec, "status": "b"}, Cond(equals={"status": "a"}))
    got = await store.get("keys", "p", "s")
    assert got["status"] == "b" and got["n"] == 1.5 and got["tags"] == ["x"]
    with pytest.raises(ConditionFailed):
        await store.delete("keys", "p", "s", Cond(equals={"status": "a"}))
    await store.delete("keys", "p", "s", Cond(exists=True))
    assert await store.get("keys", "p", "s") is None


async def test_expired_record_is_absent(store):
    past = int(time.time()) - 10
    await store.put("idempotency", {"pk": "i", "sk": "x", "expires_at": past}, Cond(absent=True))
    assert await store.get("idempotency", "i", "x") is None
    await store.put("idempotency", {"pk": "i", "sk": "x", "expires_at": past + 1000}, Cond(absent=True))
    assert (await store.get("idempotency", "i", "x"))["expires_at"] == past + 1000


async def test_query_and_tenant_index(store):
    for i, (key, tenant) in enumerate([("k1", "acme"), ("k2", "acme"), ("k1", "acme"), ("k3", "zeta")]):
        ts = f"2030-01-0{i + 1}T00:00:00"
        await store.put("usage", {"pk": key, "sk": f"{ts}#{i}", "tenant": tenant, "ts": ts}, Cond(absent=True))
    assert [r["sk"][:10] for r in await store.query("usage", "k1")] == ["2030-01-01", "2030-01-03"]
    assert len(await store.query("usage", "k1", sk_from="2030-01-02")) == 1
    assert [r["pk"] for r in await store.query_tenant("usage", "acme", ts_to="2030-01-02~")] == ["k1", "k2"]
    assert len(await store.scan("usage")) == 4
    counters = await store.scan_counters("budgets", "b#")
    assert counters == {}
