"""A write-ahead journal for settlements bound for a remote store (DynamoDB).

``settle`` appends the complete settlement (counter changes + usage record) to a local
SQLite file -- a sub-millisecond commit that survives ``kill -9`` -- and returns; the
remote writes happen in the background and the entry is deleted once they succeed.
Entries left behind by a crash (or a store outage) are replayed by :meth:`pending` at
startup; replays are harmless because a settlement is idempotent (write-once usage
record, holds settled at most once).

Not for Lambda: its disk does not outlive the execution environment, so there
settlement is written to DynamoDB before the response is returned (settle-first-then-ack).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tiergate.stores.base import Correction, CounterKey, Settlement
from tiergate.stores.files import private_file

Payload = dict[str, Any]


def encode(settlements: list[Settlement], corrections: list[Correction],
           records: list[tuple[str, dict[str, Any]]]) -> Payload:
    return {
        "s": [[s.key.table, s.key.pk, s.key.sk, s.hold_id, s.held, s.actual] for s in settlements],
        "c": [[c.key.table, c.key.pk, c.key.sk, c.delta, c.expires_at] for c in corrections],
        "r": [[t, r] for t, r in records],
    }


def decode(p: Payload) -> tuple[list[Settlement], list[Correction], list[tuple[str, dict[str, Any]]]]:
    return ([Settlement(CounterKey(t, pk, sk), h, held, actual) for t, pk, sk, h, held, actual in p["s"]],
            [Correction(CounterKey(t, pk, sk), d, x) for t, pk, sk, d, x in p["c"]],
            [(t, r) for t, r in p["r"]])


class Outbox:
    def __init__(self, path: str | Path) -> None:
        private_file(path)  # pending usage records: nobody else's business (0600, dir 0700)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiergate-outbox")
        self._db = self._pool.submit(self._open, str(path)).result()

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # survives a process crash; see module docstring
        db.execute("CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, created REAL NOT NULL, payload TEXT NOT NULL)")
        return db

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def append(self, entry_id: str, payload: Payload) -> None:
        data = json.dumps(payload, separators=(",", ":"))
        await self._run(lambda: self._db.execute("INSERT OR REPLACE INTO outbox VALUES (?,?,?)",
                                                 (entry_id, time.time(), data)))

    async def done(self, entry_id: str) -> None:
        await self._run(lambda: self._db.execute("DELETE FROM outbox WHERE id=?", (entry_id,)))

    async def pending(self, *, older_than_s: float = 0.0) -> list[tuple[str, Payload]]:
        cutoff = time.time() - older_than_s
        rows = await self._run(lambda: self._db.execute(
            "SELECT id, payload FROM outbox WHERE created <= ? ORDER BY created", (cutoff,)).fetchall())
        return [(i, json.loads(p)) for i, p in rows]

    async def aclose(self) -> None:
        await self._run(self._db.close)
        self._pool.shutdown(wait=True)
