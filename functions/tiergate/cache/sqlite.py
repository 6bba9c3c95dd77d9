"""The exact cache on SQLite (local and edge homes): its own file, bounded in size.

Its own file, apart from the record store: a cache lookup never queues behind a
settlement, and losing the file loses only reusable answers. WAL mode,
``synchronous=NORMAL`` (a cache entry lost to a power cut is only a future miss).

The hot path has no thread hop. A lookup is a point read on the event loop's own
connection: in WAL mode a reader never waits for a writer, and a primary-key read of a
hot page takes microseconds (a hop to a worker thread costs more, and far more on a busy
machine, where the worker waits to be scheduled). A store is handed to the worker thread
and not awaited; until it commits, the entry is served from an in-process map, so this
process reads its own writes at once (other processes see it at commit). Stores are
committed in batches (every :data:`FLUSH_AFTER_S`), one transaction each.

Size bound: the sum of stored bodies stays under ``max_total_bytes``; past it the oldest
entries (by store time) are deleted down to 90% of the bound, so eviction runs in
batches, not on every write. Expired entries are never returned and are purged with the
oldest. Several processes may share the file: each write is one statement (the write
lock is SQLite's), and the running total is re-read from the file before evicting.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tiergate.cache.store import Entry

T = TypeVar("T")
log = logging.getLogger(__name__)
#: Stores are written in batches: one worker wake-up and one transaction per this many
#: seconds of misses, not one per miss (a crash loses at most this much: future misses).
FLUSH_AFTER_S = 0.02

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cache_entries (key TEXT PRIMARY KEY, tenant TEXT NOT NULL, body BLOB NOT NULL,"
    " size INTEGER NOT NULL, stored_at REAL NOT NULL, expires_at REAL NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS cache_entries_age ON cache_entries (stored_at)",
)


class SqliteExactStore:
    kind = "sqlite"
    max_entry_bytes: int | None = None

    def __init__(self, path: str | Path, *, max_total_bytes: int = 256 * 1024 * 1024) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.max_total_bytes = max_total_bytes
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiergate-cache")
        self._local = threading.local()
        self._total = self._pool.submit(self._read_total).result()  # schema now: fail fast
        # The readers' connection (the event loop's): an in-memory database lives in one
        # connection, so there the worker's is shared (its writes and these reads interleave
        # under SQLite's own mutex).
        self._reader = (self._pool.submit(self._conn).result() if self.path == ":memory:" else
                        sqlite3.connect(self.path, timeout=1, isolation_level=None, check_same_thread=False))
        #: Entries accepted and not yet committed (key -> entry): this process reads them at once.
        self._pending: dict[str, Entry] = {}
        self._queue: list[tuple[Entry, bytes, bool]] = []
        self._flush_at: asyncio.TimerHandle | None = None
        self._inflight: set[asyncio.Future[int]] = set()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            for stmt in _SCHEMA:
                conn.execute(stmt)
            self._local.conn = conn
        return conn

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _read_total(self) -> int:
        return int(self._conn().execute("SELECT COALESCE(SUM(size), 0) FROM cache_entries").fetchone()[0])

    # --- contract -------------------------------------------------------------------------

    async def get(self, key: str, *, now: float) -> Entry | None:
        pending = self._pending.get(key)
        if pending is not None:
            return pending if pending.expires_at > now else None
        row = self._reader.execute("SELECT body FROM cache_entries WHERE key = ? AND expires_at > ?",
                                   (key, now)).fetchone()
        return Entry.decode(key, row[0]) if row else None

    async def put(self, entry: Entry, blob: bytes, *, replace: bool = False) -> bool:
        """Accepted for storing; written with the next batch. In this process the same
        conditions as the SQL apply at once: a live pending entry wins unless this is a
        refresh of an older one."""
        pending = self._pending.get(entry.key)
        if pending is not None and pending.expires_at > entry.stored_at and not (
                replace and pending.stored_at < entry.stored_at):
            return False
        self._pending[entry.key] = entry
        self._queue.append((entry, blob, replace))
        if self._flush_at is None:
            self._flush_at = asyncio.get_running_loop().call_later(FLUSH_AFTER_S, self._flush)
        return True

    def _flush(self) -> None:
        self._flush_at = None
        batch, self._queue = self._queue, []
        if not batch:
            return
        fut = asyncio.get_running_loop().run_in_executor(self._pool, self._put_batch, batch)
        self._inflight.add(fut)
        fut.add_done_callback(lambda f: self._written(batch, f))

    def _written(self, batch: list[tuple[Entry, bytes, bool]], fut: asyncio.Future[int]) -> None:
        self._inflight.discard(fut)
        for entry, _, _ in batch:
            if self._pending.get(entry.key) is entry:
                del self._pending[entry.key]
        if not fut.cancelled() and fut.exception() is not None:
            log.error("%d cache entries not stored: %s", len(batch), fut.exception())

    async def drain(self) -> None:
        """Write what is queued now and wait for it (tests, shutdown)."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush()
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    def _put_batch(self, batch: list[tuple[Entry, bytes, bool]]) -> int:
        conn = self._conn()
        stored = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for e, blob, replace in batch:
                # Written once: an existing live entry wins over a concurrent store of the same
                # key; an expired one is replaced; a refresh replaces an older entry, never a
                # newer one.
                cur = conn.execute(
                    "INSERT INTO cache_entries (key, tenant, body, size, stored_at, expires_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET tenant = excluded.tenant,"
                    " body = excluded.body, size = excluded.size, stored_at = excluded.stored_at,"
                    " expires_at = excluded.expires_at WHERE cache_entries.expires_at <= excluded.stored_at"
                    " OR (? AND cache_entries.stored_at < excluded.stored_at)",
                    (e.key, e.tenant, blob, len(blob), e.stored_at, e.expires_at, replace))
                if cur.rowcount > 0:
                    stored += 1
                    self._total += len(blob)
            if self._total > self.max_total_bytes:
                self._evict(conn, batch[-1][0].stored_at)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return stored

    def _evict(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute("DELETE FROM cache_entries WHERE expires_at <= ?", (now,))
        self._total = self._read_total()  # other processes write to the same file
        target = int(self.max_total_bytes * 0.9)
        while self._total > target:
            # The oldest entries first, a batch at a time.
            rows = conn.execute("SELECT key, size FROM cache_entries ORDER BY stored_at LIMIT 256").fetchall()
            if not rows:
                break
            drop, freed = [], 0
            for key, size in rows:
                drop.append((key,))
                freed += size
                if self._total - freed <= target:
                    break
            conn.executemany("DELETE FROM cache_entries WHERE key = ?", drop)
            self._total -= freed

    def stats(self) -> dict[str, int]:
        return self._pool.submit(self._stats).result()

    def _stats(self) -> dict[str, int]:
        n, size = self._conn().execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM cache_entries").fetchone()
        return {"entries": int(n), "bytes": int(size)}

    async def aclose(self) -> None:
        await self.drain()
        if self.path != ":memory:":
            self._reader.close()

        def close() -> None:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()
                self._local.conn = None
        await self._io(close)
        self._pool.shutdown(wait=True)
