"""SQLite's hot-path calls run inline on the loop's thread, and go to the worker thread
(never blocking the loop) while someone else holds the write lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

from tiergate.stores.base import Bump, CounterKey, Settlement
from tiergate.stores.sqlite import SqliteStore

K = CounterKey("budgets", "b#key#k1", "d2030-01-01")
FAR = int(time.time()) + 3600


async def test_bump_and_settle_run_on_the_loop_thread_when_the_lock_is_free(tmp_path):
    store = SqliteStore(tmp_path / "s.sqlite3")
    seen: list[str] = []
    original = SqliteStore._bump

    def spy(c, bumps, owner):
        seen.append(threading.current_thread().name)
        return original(c, bumps, owner)

    store._bump = spy  # type: ignore[method-assign]
    try:
        assert await store.bump([Bump(K, 5, 95, FAR, "h1", FAR)], now=0) == [5]
        await store.settle([Settlement(K, "h1", 5, 3)])
        assert seen == [threading.current_thread().name]
        assert (await store.read_counters([K]))[K].used == 3
        assert store.round_trips == 3  # bump, settle, read: one each
    finally:
        await store.aclose()


async def test_a_held_write_lock_sends_the_bump_off_the_loop_and_it_waits_for_the_lock(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # e.g. another worker process
    try:
        await store.bump([Bump(K, 1, None, FAR)], now=0)  # the inline connection exists
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE counters SET used = used + 10")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.create_task(ticker())
        bump = asyncio.create_task(store.bump([Bump(K, 5, None, FAR)], now=0))
        await asyncio.sleep(0.3)
        assert not bump.done() and ticks >= 10  # waiting for the lock, and the loop runs
        other.execute("COMMIT")
        assert await asyncio.wait_for(bump, 10) == [1 + 10 + 5]
        t.cancel()
        assert (await store.read_counters([K]))[K].used == 16
    finally:
        other.close()
        await store.aclose()


async def test_record_bodies_round_trip_and_a_body_json_dumps_wrote_with_nan_still_reads(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    rec = {"pk": "u#t1", "sk": "2030#1", "tenant": "t1", "ts": "2030-01-01", "model": "modèle ✓", "cost_usd": 1.5e-05,
           "tokens": 12, "cached": False, "key_id": None, "tags": ["a", "b"]}
    try:
        await store.put("usage", rec)
        assert await store.get("usage", "u#t1", "2030#1") == rec
        old = sqlite3.connect(path, isolation_level=None)  # a row as the json.dumps writer left it
        old.execute("INSERT INTO records (tbl, pk, sk, tenant, ts, expires_at, body) VALUES (?,?,?,?,?,?,?)",
                    ("usage", "u#t1", "2030#0", "t1", "2030-01-01", None,
                     '{"pk":"u#t1","sk":"2030#0","cost_usd":NaN}'))
        old.close()
        got = await store.get("usage", "u#t1", "2030#0")
        assert got is not None and got["sk"] == "2030#0" and got["cost_usd"] != got["cost_usd"]  # NaN
    finally:
        await store.aclose()


async def test_a_reservation_and_its_settlement_write_few_pages(tmp_path):
    # Every page a commit changes is a 4 KiB WAL frame written on the request path: the
    # expiry indexes of counters and holds (used only by the rare purge and the orphan
    # sweep, over small tables) were two of them in each of a request's two commits.
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path, checkpoint_interval_s=3600)
    n = 200
    try:
        for i in range(n):
            await store.bump([Bump(K, 5, None, FAR, f"h{i}", FAR, "{}")], now=0)
            await store.settle([Settlement(K, f"h{i}", 5, 3)],
                               records=[("usage", {"pk": "u#k1", "sk": f"r{i:05d}", "tenant": "t",
                                                   "ts": f"2030-01-01T00:00:{i:05d}", "expires_at": FAR})])
        c = sqlite3.connect(path)
        _busy, frames, _done = c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        c.close()
    finally:
        await store.aclose()
    assert not names & {"counters_expiry", "holds_expiry"}
    assert frames / n <= 8.5, f"{frames / n:.1f} WAL frames per reservation + settlement"


async def test_a_briefly_held_lock_is_waited_for_on_the_loop_not_on_the_worker_thread(tmp_path):
    # Handing the call to the worker thread at once started convoys: the thread holds the
    # flock while it works through its queue, so the calls arriving meanwhile queued too.
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    seen: list[str] = []
    original = SqliteStore._bump

    def spy(c, bumps, owner):
        seen.append(threading.current_thread().name)
        return original(c, bumps, owner)

    store._bump = spy  # type: ignore[method-assign]
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # another worker process
    try:
        await store.bump([Bump(K, 1, None, FAR)], now=0)
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE counters SET used = used + 10")
        bump = asyncio.create_task(store.bump([Bump(K, 5, None, FAR)], now=0))
        await asyncio.sleep(0.01)  # a short transaction of the other process
        assert not bump.done()
        other.execute("COMMIT")
        assert await asyncio.wait_for(bump, 5) == [16]
        loop_thread = threading.current_thread().name
        assert set(seen) == {loop_thread} and len(seen) >= 3  # tried, retried, done: all inline
        assert store.inline_retries >= 1 and store.retries_gave_up == 0
    finally:
        other.close()
        await store.aclose()


async def test_expired_counters_and_records_are_purged_in_the_background_in_batches(tmp_path, monkeypatch):
    import tiergate.stores.sqlite as sq

    monkeypatch.setattr(sq, "PURGE_BATCH", 7)  # several batches for 20 rows
    store = SqliteStore(tmp_path / "s.sqlite3", checkpoint_interval_s=0.05, purge_interval_s=0.05)
    past, live = int(time.time()) - 10, CounterKey("budgets", "b#key#k1", "d-live")
    try:
        await store.bump([Bump(CounterKey("budgets", "b#key#k1", f"d-old{i}"), 1, None, past) for i in range(20)]
                         + [Bump(live, 1, None, FAR)], now=0)
        for i in range(20):
            await store.put("usage", {"pk": "u#k1", "sk": f"old{i:02d}", "expires_at": past})
        await store.put("usage", {"pk": "u#k1", "sk": "kept", "expires_at": FAR})
        await store.put("usage", {"pk": "u#k1", "sk": "forever"})
        deadline = time.monotonic() + 10
        while store.purged < 40 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert store.purged == 40
        c = sqlite3.connect(tmp_path / "s.sqlite3")
        left = sorted(r[0] for r in c.execute("SELECT sk FROM counters UNION ALL SELECT sk FROM records"))
        c.close()
        assert left == ["d-live", "forever", "kept"]
    finally:
        await store.aclose()
