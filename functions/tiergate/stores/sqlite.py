"""The embedded default store: one SQLite file, WAL mode, safe for several processes.

Every multi-row change is one ``BEGIN IMMEDIATE`` transaction: the write lock is taken
up front, so two processes never both read a counter and then both add to it (the
read-check-write of a bump is serialized across processes; readers keep reading under
WAL). ``busy_timeout`` makes a writer wait for the lock instead of failing.

The hot-path calls (bump, settle, release, get) run *inline* on the event loop's thread,
on a connection of its own whose busy timeout is zero: in WAL mode with
``synchronous=NORMAL`` such a transaction is a few page writes into the OS cache (no
fsync; checkpoints run on their own thread), ~50 us, far less than handing it to a worker
thread and back (two thread wake-ups and a loop wake-up per call: measured in the commit
that made this change). When the write lock is taken -- another process (``--workers``),
a worker-thread write of this one, a RESTART checkpoint -- the non-blocking flock on
``<db>-writelock`` or ``BEGIN IMMEDIATE`` fails at once (SQLITE_BUSY), nothing has been
written, and the call goes to the worker thread,
which waits for the lock there (``busy_timeout``), off the loop. Everything else
(queries, scans, key writes) runs on the worker thread (one connection per thread). One
thread by default: threads of one process contending for the write lock only wait in
SQLite's busy handler (sleeps of up to 100 ms), which measured far worse (bench/admission).
A bump or a settlement is a single transaction = one round trip.

Each process stamps its holds with its :class:`~tiergate.stores.liveness.ProcessLease`
token, so :meth:`SqliteStore.orphaned_holds` finds the holds of dead processes at once,
not only expired ones. The file and its directory are private (0600 / 0700).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from tiergate.stores.base import (
    Bump,
    Cond,
    ConditionFailed,
    Correction,
    CounterKey,
    CounterState,
    HeldReservation,
    RecordStore,
    Rejected,
    Settlement,
)
from tiergate.stores.files import private_file
from tiergate.stores.liveness import ProcessLease

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    tbl TEXT NOT NULL, pk TEXT NOT NULL, sk TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0, reserved INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tbl, pk, sk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holds (
    tbl TEXT NOT NULL, pk TEXT NOT NULL, sk TEXT NOT NULL, hold_id TEXT NOT NULL,
    amount INTEGER NOT NULL, expires_at INTEGER NOT NULL, meta TEXT, owner TEXT,
    PRIMARY KEY (tbl, pk, sk, hold_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    tbl TEXT NOT NULL, pk TEXT NOT NULL, sk TEXT NOT NULL,
    tenant TEXT, ts TEXT, expires_at INTEGER, body TEXT NOT NULL,
    PRIMARY KEY (tbl, pk, sk)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_tenant ON records (tbl, tenant, ts);
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_at);
DROP INDEX IF EXISTS counters_expiry;
DROP INDEX IF EXISTS holds_expiry;
"""
# No expiry index on counters or holds (files made before lose theirs above): each was a
# page more in both commits of every request (a 4 KiB WAL frame apiece: 10.6 -> 8.0 frames
# per reservation + settlement), while only the background purge (over counters: a row per
# key and window, in batches) and the orphan sweep (over holds:
# the reservations in flight) read them. records keeps its: it holds every usage record.
#: Columns added to ``holds`` after its first release (files made before get them here).
_HOLD_COLUMNS = (("meta", "TEXT"), ("owner", "TEXT"))

_LIVE = "(expires_at IS NULL OR expires_at >= ?)"
#: SQLITE_BUSY and SQLITE_LOCKED (the low byte of their extended codes): the lock is someone else's.
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


#: WAL frames (4 KiB pages, so ~64 MB) after which the checkpoint thread restarts the WAL: rare
#: enough that the brief writer stall of a RESTART stays out of the p99 at ~1000 writes/s.
RESTART_AFTER_FRAMES = 16384
#: How long a short call keeps retrying on the loop's thread while another connection holds
#: the write lock, before it waits for the lock on the worker thread (see ``_run_short``).
INLINE_RETRY_S = 0.05


class SqliteStore(RecordStore):
    kind = "sqlite"

    def __init__(self, path: str | Path, *, threads: int = 1, busy_timeout_ms: int = 30_000,
                 purge_every: int = 1000, checkpoint_interval_s: float = 2.0,
                 purge_interval_s: float = 60.0) -> None:
        super().__init__()
        self._memory = str(path) == ":memory:"
        self.lease: ProcessLease | None = None
        if not self._memory:
            private_file(path)
            self.lease = ProcessLease(str(path) + ".owners")
        self.path = str(path)
        self._busy_ms = busy_timeout_ms
        # An in-memory database lives in one connection: one thread serializes it.
        self._pool = ThreadPoolExecutor(max_workers=1 if self._memory else threads,
                                        thread_name_prefix="tiergate-sqlite")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._purge_every = purge_every
        self._settles = 0
        #: Rows the background purge deleted.
        self.purged = 0
        #: Inline tries that found the write lock taken, and calls that then went to the thread.
        self.inline_retries = 0
        self.retries_gave_up = 0
        self._pool.submit(self._conn).result()  # create the schema now, fail fast
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if not self._memory:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop,
                                                  args=(checkpoint_interval_s, purge_interval_s),
                                                  name="tiergate-sqlite-checkpoint", daemon=True)
            self._checkpointer.start()

    # --- plumbing ---------------------------------------------------------------------

    def _conn(self, *, busy_ms: int | None = None) -> sqlite3.Connection:
        """This thread's connection (``busy_ms=0``: its inline one, which never waits for a lock)."""
        attr = "conn" if busy_ms is None else "inline_conn"
        conn = getattr(self._local, attr, None)
        if conn is None:
            busy = self._busy_ms if busy_ms is None else busy_ms
            conn = sqlite3.connect(self.path, timeout=busy / 1000, isolation_level=None,
                                   check_same_thread=False, factory=_Connection)
            if not self._memory:
                conn.write_lock = os.open(self.path + "-writelock", os.O_RDWR | os.O_CREAT, 0o600)
            # The inline connection never waits for the write lock (flock or SQLite's): it
            # gives the call to the worker thread instead.
            conn.nonblocking = busy_ms == 0
            conn.execute(f"PRAGMA busy_timeout={busy}")
            if not self._memory:
                conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL: a committed transaction survives a process crash (kill -9);
                # only an OS crash/power loss may drop the last commits.
                conn.execute("PRAGMA synchronous=NORMAL")
                # No checkpoint on the request path: SQLite's automatic one (every 1000 WAL
                # pages, ~150 requests here) copies and fsyncs inside a commit, a 10+ ms stall.
                # The checkpoint thread below does it instead.
                conn.execute("PRAGMA wal_autocheckpoint=0")
                conn.execute("PRAGMA journal_size_limit=67108864")  # a reset WAL shrinks back to 64 MB
            if busy_ms is None:  # the inline connection comes later: the schema exists by then
                with _txn(conn):
                    have = {r[1] for r in conn.execute("PRAGMA table_info(holds)")}
                    if have and not {c for c, _ in _HOLD_COLUMNS} <= have:
                        for col, kind in _HOLD_COLUMNS:
                            if col not in have:
                                conn.execute(f"ALTER TABLE holds ADD COLUMN {col} {kind}")
                    for stmt in filter(str.strip, _SCHEMA.split(";")):
                        conn.execute(stmt)
            setattr(self._local, attr, conn)
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _checkpoint_loop(self, interval_s: float, purge_interval_s: float) -> None:
        """Fold the WAL back into the database in the background, and every
        ``purge_interval_s`` delete what expired (:meth:`_purge`). PASSIVE rounds never
        block anyone; once the WAL passes ~64 MB a RESTART round lets the next writer start
        it from the beginning (PASSIVE alone leaves it growing under steady writes).
        Measured on this machine: commit p99.9 0.2 ms this way, 9.9 ms with SQLite's own
        automatic checkpoint in the committing request.

        A round every 2 s, not more often: a commit that follows a checkpoint round can
        take milliseconds (inline on the loop's thread, a stall of every request), whether
        the round fsyncs or not and whichever process runs it. Measured (stream bench, 100
        streams, commits > 1 ms): 17-20 with a round every 50 ms, 2 every 2 s, 0 with none
        (the WAL then grows: ~8,000 frames between rounds at ~1,000 settlements/s, under
        RESTART_AFTER_FRAMES)."""
        conn = sqlite3.connect(self.path, timeout=self._busy_ms / 1000, isolation_level=None,
                               check_same_thread=False)
        purged = time.monotonic()
        try:
            while not self._stop.wait(min(interval_s, purge_interval_s)):
                if time.monotonic() - purged >= purge_interval_s:
                    purged = time.monotonic()
                    try:
                        self.purged += _purge(conn, int(time.time()), self._stop)
                    except sqlite3.Error:
                        pass  # locked past the busy timeout, or the file went away: next round
                try:
                    _busy, frames, _done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames > RESTART_AFTER_FRAMES:
                        conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                except sqlite3.Error:
                    continue  # busy or locked by another process: next round
        finally:
            conn.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self.round_trips += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(self._conn()))

    async def _run_short(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A short transaction (or point read) inline on the loop's thread while the write
        lock is free. While another connection holds it (SQLITE_BUSY, nothing written: the
        lock is taken before the first write; or the cross-process flock) the call yields to
        the loop and tries again inline, for up to :data:`INLINE_RETRY_S`; only then does it
        go to the worker thread, which waits for the lock.

        Why not hand it to the worker thread at once: the thread needs the GIL the busy loop
        holds (up to the 5 ms switch interval per hand-over) and it holds the flock while it
        works through its queue, so every inline call that came meanwhile found the lock
        taken and queued behind it: one purge or one write of another worker started a
        convoy that put most settlements on the thread (measured: 8,406 of ~13,000 at 16
        connections, 11 ms each on average)."""
        if self._memory:  # one connection, owned by the worker thread
            return await self._run(fn)
        deadline = 0.0
        delay = 0.0
        while True:
            conn: sqlite3.Connection | None = None
            try:
                conn = self._conn(busy_ms=0)
                result = fn(conn)
            except _LockTaken:  # another connection's flock
                pass
            except sqlite3.OperationalError as e:
                if (e.sqlite_errorcode or 0) & 0xFF not in _BUSY_CODES:
                    raise
                if conn is not None and conn.in_transaction:  # busy past BEGIN: never keep the lock
                    conn.execute("ROLLBACK")
            else:
                self.round_trips += 1
                return result
            now = time.monotonic()
            if not deadline:
                deadline = now + INLINE_RETRY_S
            elif now >= deadline:
                self.retries_gave_up += 1
                return await self._run(fn)
            self.inline_retries += 1
            await asyncio.sleep(delay)  # 0 first: the holder's commit is usually a turn away
            delay = min(delay * 2 or 0.0005, 0.004)

    async def aclose(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=5)
        self._pool.shutdown(wait=True)
        with self._conns_lock:
            for c in self._conns:
                c.close()
                if c.write_lock is not None:
                    os.close(c.write_lock)
            self._conns.clear()
        if self.lease is not None:
            self.lease.close()

    # --- counters ---------------------------------------------------------------------

    async def bump(self, bumps: Sequence[Bump], *, now: int) -> list[int]:
        owner = self.lease.token if self.lease else None
        return await self._run_short(lambda c: self._bump(c, bumps, owner))

    @staticmethod
    def _bump(c: sqlite3.Connection, bumps: Sequence[Bump], owner: str | None) -> list[int]:
        out: list[int] = []
        with _txn(c):
            for i, b in enumerate(bumps):
                k = b.key
                row = c.execute("SELECT used FROM counters WHERE tbl=? AND pk=? AND sk=?",
                                (k.table, k.pk, k.sk)).fetchone()
                used = row[0] if row else 0
                if b.prev_key is not None:  # sliding window: the previous window's share counts too
                    p = b.prev_key
                    prev = c.execute("SELECT used FROM counters WHERE tbl=? AND pk=? AND sk=?",
                                     (p.table, p.pk, p.sk)).fetchone()
                    slid = b.slid(prev[0] if prev else 0)
                else:
                    slid = 0
                if b.max_before is not None and used + slid > b.max_before:
                    raise Rejected(i, used + slid)  # _txn rolls back the bumps already applied
                held = b.amount if b.hold_id else 0
                c.execute(
                    "INSERT INTO counters (tbl, pk, sk, used, reserved, expires_at) VALUES (?,?,?,?,?,?) "
                    "ON CONFLICT (tbl, pk, sk) DO UPDATE SET used = used + excluded.used, "
                    "reserved = reserved + excluded.reserved, expires_at = excluded.expires_at",
                    (k.table, k.pk, k.sk, b.amount, held, b.expires_at))
                if b.hold_id:
                    c.execute("INSERT OR REPLACE INTO holds (tbl, pk, sk, hold_id, amount, expires_at, meta, owner) "
                              "VALUES (?,?,?,?,?,?,?,?)", (k.table, k.pk, k.sk, b.hold_id, b.amount,
                                                           b.hold_expires_at or b.expires_at, b.hold_meta, owner))
                out.append(used + slid + b.amount)
        return out

    async def settle(self, settlements: Sequence[Settlement], corrections: Sequence[Correction] = (),
                     records: Sequence[tuple[str, dict[str, Any]]] = ()) -> None:
        self._settles += 1
        # A file's expired rows go in the background (_checkpoint_loop); an in-memory
        # database (tests, benchmarks: its one connection is the worker thread's) purges
        # in every purge_every-th settlement.
        purge = self._memory and self._settles % self._purge_every == 0
        await self._run_short(lambda c: self._settle(c, settlements, corrections, records, purge))

    def _settle(self, c: sqlite3.Connection, settlements: Sequence[Settlement],
                corrections: Sequence[Correction], records: Sequence[tuple[str, dict[str, Any]]],
                purge: bool) -> None:
        now = int(time.time())
        with _txn(c):
            for table, rec in records:
                # Write-once: a replayed settlement finds its record and writes nothing.
                try:
                    _put(c, table, rec, Cond(absent=True, now=now))
                except ConditionFailed:
                    return  # this settlement was applied before, counters included
            for s in settlements:
                k = s.key
                row = c.execute("DELETE FROM holds WHERE tbl=? AND pk=? AND sk=? AND hold_id=? RETURNING amount",
                                (k.table, k.pk, k.sk, s.hold_id)).fetchone()
                if row is None and s.only_if_held:
                    continue  # charging an orphan: this counter never had it, or it is settled
                held = row[0] if row else 0  # no hold: the counter was reset meanwhile
                c.execute("UPDATE counters SET used = used + ?, reserved = reserved - ? "
                          "WHERE tbl=? AND pk=? AND sk=?", (s.actual - held, held, k.table, k.pk, k.sk))
            for corr in corrections:
                k = corr.key
                if corr.expires_at is None:
                    c.execute("UPDATE counters SET used = used + ? WHERE tbl=? AND pk=? AND sk=?",
                              (corr.delta, k.table, k.pk, k.sk))
                else:
                    c.execute("INSERT INTO counters (tbl, pk, sk, used, reserved, expires_at) VALUES (?,?,?,?,0,?) "
                              "ON CONFLICT (tbl, pk, sk) DO UPDATE SET used = used + excluded.used",
                              (k.table, k.pk, k.sk, corr.delta, corr.expires_at))
            if purge:
                c.execute("DELETE FROM counters WHERE expires_at < ?", (now,))
                c.execute("DELETE FROM records WHERE expires_at < ?", (now,))

    async def release(self, bumps: Sequence[Bump]) -> None:
        def go(c: sqlite3.Connection) -> None:
            with _txn(c):
                for b in bumps:
                    k = b.key
                    held = b.amount if b.hold_id else 0
                    if b.hold_id:
                        c.execute("DELETE FROM holds WHERE tbl=? AND pk=? AND sk=? AND hold_id=?",
                                  (k.table, k.pk, k.sk, b.hold_id))
                    c.execute("UPDATE counters SET used = used - ?, reserved = reserved - ? "
                              "WHERE tbl=? AND pk=? AND sk=?", (b.amount, held, k.table, k.pk, k.sk))
        await self._run_short(go)

    async def read_counters(self, keys: Sequence[CounterKey]) -> dict[CounterKey, CounterState]:
        def go(c: sqlite3.Connection) -> dict[CounterKey, CounterState]:
            out = {}
            for k in keys:
                st = _read_counter(c, k)
                if st is not None:
                    out[k] = st
            return out
        return await self._run(go)

    async def orphaned_holds(self, *, now: int, key: CounterKey | None = None,
                             limit: int = 1000) -> list[HeldReservation]:
        lease = self.lease

        def go(c: sqlite3.Connection) -> list[HeldReservation]:
            where, args = "tbl = 'budgets'", []
            if key is not None:
                where += " AND pk = ? AND sk = ?"
                args += [key.pk, key.sk]
            dead: list[str] = []
            if lease is not None:
                owners = [r[0] for r in c.execute(f"SELECT DISTINCT owner FROM holds WHERE {where} "
                                                  "AND owner IS NOT NULL", args)]
                dead = [o for o in owners if lease.is_dead(o)]
            cond = "expires_at < ?" + (f" OR owner IN ({','.join('?' * len(dead))})" if dead else "")
            rows = c.execute(f"SELECT pk, sk, hold_id, amount, expires_at, meta FROM holds WHERE {where} "
                             f"AND ({cond}) LIMIT ?", [*args, now, *dead, limit]).fetchall()
            if lease is not None and key is None:
                # A dead owner's file goes once its holds are gone (charged on an earlier sweep).
                live = {r[0] for r in c.execute("SELECT DISTINCT owner FROM holds WHERE owner IS NOT NULL")}
                for f in lease.dir.glob("*.lock"):
                    if f.stem not in live and f.stem != lease.token and lease.is_dead(f.stem):
                        lease.forget(f.stem)
            return [HeldReservation(CounterKey("budgets", pk, sk), h, a, x, meta or "")
                    for pk, sk, h, a, x, meta in rows]
        return await self._run(go)

    async def scan_counters(self, table: str, pk_prefix: str) -> dict[CounterKey, CounterState]:
        def go(c: sqlite3.Connection) -> dict[CounterKey, CounterState]:
            rows = c.execute("SELECT pk, sk FROM counters WHERE tbl=? AND substr(pk, 1, ?) = ?",
                             (table, len(pk_prefix), pk_prefix)).fetchall()
            out = {}
            for pk, sk in rows:
                k = CounterKey(table, pk, sk)
                st = _read_counter(c, k)
                if st is not None:
                    out[k] = st
            return out
        return await self._run(go)

    async def delete_counters(self, keys: Sequence[CounterKey]) -> None:
        def go(c: sqlite3.Connection) -> None:
            with _txn(c):
                for k in keys:
                    c.execute("DELETE FROM counters WHERE tbl=? AND pk=? AND sk=?", (k.table, k.pk, k.sk))
                    c.execute("DELETE FROM holds WHERE tbl=? AND pk=? AND sk=?", (k.table, k.pk, k.sk))
        await self._run(go)

    # --- records ----------------------------------------------------------------------

    async def put(self, table: str, record: dict[str, Any], cond: Cond | None = None) -> None:
        cond = cond or Cond()
        def go(c: sqlite3.Connection) -> None:
            with _txn(c):
                _put(c, table, record, cond)
        await self._run(go)

    async def get(self, table: str, pk: str, sk: str) -> dict[str, Any] | None:
        return await self._run_short(lambda c: _get(c, table, pk, sk, int(time.time())))

    async def delete(self, table: str, pk: str, sk: str, cond: Cond | None = None) -> None:
        cond = cond or Cond()
        def go(c: sqlite3.Connection) -> None:
            with _txn(c):
                _check(_get(c, table, pk, sk, cond.now or int(time.time())), cond)
                c.execute("DELETE FROM records WHERE tbl=? AND pk=? AND sk=?", (table, pk, sk))
        await self._run(go)

    async def query(self, table: str, pk: str, *, sk_from: str | None = None, sk_to: str | None = None,
                    limit: int = 1000) -> list[dict[str, Any]]:
        sql = f"SELECT body FROM records WHERE tbl=? AND pk=? AND sk >= ? AND sk <= ? AND {_LIVE} ORDER BY sk LIMIT ?"
        args = (table, pk, sk_from or "", sk_to or "\U0010ffff", int(time.time()), limit)
        return await self._run(lambda c: [_load(r[0]) for r in c.execute(sql, args)])

    async def query_tenant(self, table: str, tenant: str, *, ts_from: str | None = None,
                           ts_to: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql = (f"SELECT body FROM records WHERE tbl=? AND tenant=? AND ts >= ? AND ts <= ? AND {_LIVE} "
               "ORDER BY ts LIMIT ?")
        args = (table, tenant, ts_from or "", ts_to or "\U0010ffff", int(time.time()), limit)
        return await self._run(lambda c: [_load(r[0]) for r in c.execute(sql, args)])

    async def scan(self, table: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        sql = f"SELECT body FROM records WHERE tbl=? AND {_LIVE} LIMIT ?"
        args = (table, int(time.time()), limit)
        return await self._run(lambda c: [_load(r[0]) for r in c.execute(sql, args)])


# --- the write lock across processes (tiergate serve --workers N) ----------------------
# SQLite's own lock stays the guarantee (BEGIN IMMEDIATE below). But a writer that finds it
# taken by another process sleeps in SQLite's busy handler (1, 2, 5, 10... ms) although the
# holder is done within a fraction of a millisecond. So every write transaction first takes
# an flock on "<db>-writelock": a waiter blocks in the kernel and wakes the moment the
# holder commits (measured with another process holding the lock half the time: a small
# write's p90 0.16-0.25 ms this way, 1.1-3.2 ms with the busy handler alone). Readers never
# take it; the kernel drops it if its process dies.


class _Connection(sqlite3.Connection):
    write_lock: int | None = None  # fd of "<db>-writelock" (None: in-memory database)
    nonblocking = False  # True: the loop thread's inline connection (flock with LOCK_NB)


class _LockTaken(Exception):
    """The inline connection found the cross-process write lock taken (nothing written)."""


class _txn:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception), under the
    cross-process write lock when the connection has one."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.c = conn
        self.fd = getattr(conn, "write_lock", None)

    def __enter__(self) -> sqlite3.Connection:
        if self.fd is not None:
            if getattr(self.c, "nonblocking", False):
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise _LockTaken from None
            else:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            self.c.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._unlock()
            raise
        return self.c

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        try:
            self.c.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)


#: Rows one purge statement deletes at most (one short write transaction each).
PURGE_BATCH = 500


def _purge(c: sqlite3.Connection, now: int, stop: threading.Event | None = None) -> int:
    """Delete expired counters and records, ``PURGE_BATCH`` rows per statement.

    Each statement is its own transaction (``c`` is in autocommit mode), so SQLite's write
    lock is held only inside one C call, without the GIL: the loop's inline writers, which
    never wait for the lock, find it free again a fraction of a millisecond later (they
    retry, ``_run_short``). One big DELETE in a transaction held the lock across GIL
    hand-overs (up to 5 ms each) while the busy loop's requests waited. The cross-process
    flock is not taken: SQLite's own lock serializes the purge with every writer."""
    n = 0
    for table in ("counters", "records"):
        while stop is None or not stop.is_set():
            cur = c.execute(f"DELETE FROM {table} WHERE (tbl, pk, sk) IN "
                            f"(SELECT tbl, pk, sk FROM {table} WHERE expires_at < ? LIMIT {PURGE_BATCH})", (now,))
            n += cur.rowcount
            if cur.rowcount < PURGE_BATCH:
                break
    return n


def _read_counter(c: sqlite3.Connection, k: CounterKey) -> CounterState | None:
    row = c.execute("SELECT used, reserved FROM counters WHERE tbl=? AND pk=? AND sk=?",
                    (k.table, k.pk, k.sk)).fetchone()
    if row is None:
        return None
    holds = c.execute("SELECT hold_id, amount, expires_at FROM holds WHERE tbl=? AND pk=? AND sk=?",
                      (k.table, k.pk, k.sk)).fetchall()
    return CounterState(used=row[0], reserved=row[1], holds={h: (a, x) for h, a, x in holds})


def _get(c: sqlite3.Connection, table: str, pk: str, sk: str, now: int) -> dict[str, Any] | None:
    row = c.execute(f"SELECT body FROM records WHERE tbl=? AND pk=? AND sk=? AND {_LIVE}",
                    (table, pk, sk, now)).fetchone()
    return _load(row[0]) if row else None


def _check(current: dict[str, Any] | None, cond: Cond) -> None:
    """Evaluate a :class:`Cond` against the live record (expired records count as absent)."""
    if cond.absent and current is not None:
        raise ConditionFailed("record exists")
    if (cond.exists or cond.equals) and current is None:
        raise ConditionFailed("record does not exist")
    for k, v in cond.equals.items():
        if current is not None and current.get(k) != v:
            raise ConditionFailed(f"{k} differs")


def _dump(rec: dict[str, Any]) -> str:
    """A record's body column: orjson (a usage record in ~1 us; json.dumps took ~7), or
    json.dumps for what orjson refuses (nesting past its 254 levels: a record written by an
    older version, or by an operator's tool, must still be stored as the other store would)."""
    try:
        return orjson.dumps(rec, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(rec)


def _load(body: str) -> dict[str, Any]:
    try:
        return orjson.loads(body)  # type: ignore[no-any-return]
    except orjson.JSONDecodeError:
        return json.loads(body)  # type: ignore[no-any-return]  # a body json.dumps wrote with NaN


def _put(c: sqlite3.Connection, table: str, rec: dict[str, Any], cond: Cond) -> None:
    now = cond.now or int(time.time())
    if cond.absent or cond.exists or cond.equals:
        _check(_get(c, table, rec["pk"], rec["sk"], now), cond)
    c.execute("INSERT OR REPLACE INTO records (tbl, pk, sk, tenant, ts, expires_at, body) VALUES (?,?,?,?,?,?,?)",
              (table, rec["pk"], rec["sk"], rec.get("tenant"), rec.get("ts"), rec.get("expires_at"),
               _dump(rec)))
