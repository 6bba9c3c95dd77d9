"""Idempotency-Key semantics over both stores, and the write-ahead settlement journal."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.limits.conftest import MASTER, make_catalog
from tests.limits.helpers import outcome, request
from tiergate.errors import Conflict, InvalidRequest
from tiergate.limits import budgets, usage
from tiergate.limits.idempotency import Hit, Idempotency, Started, request_hash
from tiergate.limits.outbox import Outbox
from tiergate.limits.store_admission import StoreAdmission
from tiergate.stores.sqlite import SqliteStore

H1, H2 = request_hash({"model": "a", "messages": []}), request_hash({"model": "b", "messages": []})


async def test_first_response_is_replayed(store):
    idem = Idempotency(store)
    s = await idem.begin("k1", "abc", H1)
    assert isinstance(s, Started)
    with pytest.raises(Conflict, match="in progress"):
        await idem.begin("k1", "abc", H1)  # concurrent duplicate, no waiting configured
    assert isinstance(await idem.begin("k2", "abc", H1), Started)  # scoped per caller
    await idem.complete(s, 200, {"id": "x", "n": 1.5, "none": None}, {"x-tiergate-tier": "0"})
    hit = await idem.begin("k1", "abc", H1)
    assert hit == Hit(200, {"id": "x", "n": 1.5, "none": None}, {"x-tiergate-tier": "0"})
    with pytest.raises(Conflict, match="different request"):
        await idem.begin("k1", "abc", H2)
    with pytest.raises(InvalidRequest):
        await idem.begin("k1", "", H1)


async def test_failure_releases_the_key(store):
    idem = Idempotency(store)
    s = await idem.begin("k", "key-1", H1)
    await idem.fail(s)
    s2 = await idem.begin("k", "key-1", H1)
    assert isinstance(s2, Started) and s2.token != s.token
    await idem.fail(s)  # a stale owner releases nothing
    with pytest.raises(Conflict):
        await idem.begin("k", "key-1", H1)


async def test_stale_lock_expires_and_slow_owner_cannot_overwrite(store):
    t = [1_900_000_000.0]
    idem = Idempotency(store, lock_ttl_s=30, clock=lambda: t[0])
    slow = await idem.begin("k", "key-2", H1)
    t[0] += 31  # ... its request died; the lock expires
    fresh = await idem.begin("k", "key-2", H1)
    assert isinstance(fresh, Started)
    await idem.complete(slow, 500, {"late": True})  # not the owner any more: ignored
    await idem.complete(fresh, 200, {"ok": True})
    assert await idem.begin("k", "key-2", H1) == Hit(200, {"ok": True}, {})


async def test_duplicate_waits_for_the_first(store):
    idem = Idempotency(store, wait_s=5, poll_s=0.02)
    s = await idem.begin("k", "key-3", H1)

    async def finish_later() -> None:
        await asyncio.sleep(0.2)
        await idem.complete(s, 200, {"ok": 1})

    task = asyncio.create_task(finish_later())
    assert await idem.begin("k", "key-3", H1) == Hit(200, {"ok": 1}, {})
    await task


async def test_retried_request_is_not_paid_twice(settings, store):
    """The chat route's call site, with admission: the retry gets the stored response."""
    adm = StoreAdmission(settings, make_catalog(), store)
    idem = Idempotency(store)
    master = await adm.authenticate(f"Bearer {MASTER}")
    calls = 0

    async def handle(body: dict) -> dict:
        nonlocal calls
        got = await idem.begin(master.key_id, "retry-me", request_hash(body))
        if isinstance(got, Hit):
            return got.body
        calls += 1
        t = await adm.admit(master, request(adm.catalog.by_id["small"]))
        await adm.settle(t, outcome(t))
        resp = {"id": t.request_id, "cost": t.reserved_usd}
        await idem.complete(got, 200, resp)
        return resp

    first = await handle({"q": 1})
    assert await handle({"q": 1}) == first
    assert calls == 1 and len(await usage.query(store, key_id=master.key_id)) == 1


class BrokenSettle(SqliteStore):
    async def settle(self, *a, **kw):
        raise ConnectionError("store unreachable")


async def test_outbox_keeps_settlements_until_the_store_has_them(settings_for, tmp_path):
    settings = settings_for("sqlite")
    cat = make_catalog({"global": {"daily_usd": 1.0}})
    broken = BrokenSettle(settings.resolved_sqlite_path)
    journal = Outbox(tmp_path / "outbox.sqlite3")
    adm = StoreAdmission(settings, cat, broken, outbox=journal)
    master = await adm.authenticate(f"Bearer {MASTER}")
    t = await adm.admit(master, request(cat.by_id["small"]))
    await adm.settle(t, outcome(t))  # durable in the journal; the store write fails
    await adm.drain()
    await journal.aclose()
    await broken.aclose()
    probe = SqliteStore(settings.resolved_sqlite_path)
    assert await usage.query(probe, key_id="master") == []
    day = (await budgets.report(probe, cat.budgets, key=None, tenant=None, now=time.time()))[0]
    assert day["reserved_usd"] > 0 and day["spent_usd"] == 0  # only the reservation so far
    await probe.aclose()

    # "restart": a new process with a healthy store replays the journal
    store = SqliteStore(settings.resolved_sqlite_path)
    adm2 = StoreAdmission(settings, cat, store, outbox=Outbox(tmp_path / "outbox.sqlite3"))
    assert await adm2.recover() == 1
    assert await adm2.recover() == 0
    recs = await usage.query(store, key_id="master")
    assert [r["request_id"] for r in recs] == [t.request_id]
    day = (await budgets.report(store, cat.budgets, key=None, tenant=None, now=time.time()))[0]
    assert day["reserved_usd"] == 0 and day["spent_usd"] == pytest.approx(t.deployment.cost_usd(1000, 500))
    await adm2.aclose()
    await store.aclose()
