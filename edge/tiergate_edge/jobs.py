"""A durable SQLite queue of deferred requests.

A request that needs the cloud while it is down (and allows deferral) becomes a row
here before the client gets its ``202``: WAL with ``synchronous=FULL`` makes the insert
durable at commit, so a kill -9 right after the answer loses nothing.

Each job carries an idempotency key, sent to the cloud as ``Idempotency-Key`` on every
attempt, so a job whose attempt was cut off by a crash (sent, result not yet recorded)
is replayed by the cloud instead of re-executed. Locally a job moves
queued -> running (claimed under a lease) -> done | failed, and every transition is a
conditional UPDATE on the current state and lease owner, so a result is recorded once
even if two drainers (or a restarted process) race on the same row. A job put back after
a transient failure waits until its ``next_attempt_at`` (per-job backoff), and a claim
skips it meanwhile, so one stuck job never holds up the jobs behind it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tiergate.stores.files import private_dir, private_file

Status = Literal["queued", "running", "done", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id           TEXT PRIMARY KEY,
    idem_key     TEXT NOT NULL UNIQUE,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    body         TEXT NOT NULL,
    principal    TEXT NOT NULL,
    hints        TEXT NOT NULL,
    result       TEXT,
    error        TEXT,
    http_status  INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    lease_owner  TEXT,
    lease_until  REAL,
    created      REAL NOT NULL,
    updated      REAL NOT NULL,
    completed    REAL,
    next_attempt_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_pending ON jobs (status, created);
"""


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    idem_key: str
    status: Status
    body: dict[str, Any]
    principal: dict[str, Any]
    hints: dict[str, str]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    http_status: int | None
    attempts: int
    created: float
    updated: float
    completed: float | None

    def public(self) -> dict[str, Any]:
        """The ``GET /v1/jobs/{id}`` shape."""
        out: dict[str, Any] = {"id": self.id, "object": "tiergate.job", "status": self.status,
                               "created": int(self.created), "attempts": self.attempts,
                               "completed": int(self.completed) if self.completed else None}
        if self.result is not None:
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        return out


def _row_to_job(r: sqlite3.Row) -> Job:
    loads = json.loads
    return Job(
        id=r["id"], idem_key=r["idem_key"], status=r["status"], body=loads(r["body"]),
        principal=loads(r["principal"]), hints=loads(r["hints"]),
        result=loads(r["result"]) if r["result"] else None, error=loads(r["error"]) if r["error"] else None,
        http_status=r["http_status"], attempts=r["attempts"], created=r["created"], updated=r["updated"],
        completed=r["completed"],
    )


class JobStore:
    """Synchronous store; :class:`JobQueue` runs it off the event loop."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        private_file(path)  # queued requests (prompts, answers): 0600, dir 0700
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before we answer 202 (WAL's default NORMAL may lose it on power loss).
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            cols = {r["name"] for r in self._db.execute("PRAGMA table_info(jobs)")}
            if "next_attempt_at" not in cols:  # a queue file from before per-job backoff
                self._db.execute("ALTER TABLE jobs ADD COLUMN next_attempt_at REAL")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def enqueue(self, body: dict[str, Any], principal: dict[str, Any], hints: dict[str, str],
                idem_key: str | None = None) -> Job:
        """Insert a queued job; a repeated client idempotency key returns the existing job."""
        now = time.time()
        job_id = "job_" + uuid.uuid4().hex
        key = idem_key or "tg-" + uuid.uuid4().hex
        with self._lock:
            # ON CONFLICT DO NOTHING on idem_key: the same client retry must not queue twice.
            self._db.execute(
                "INSERT INTO jobs (id, idem_key, status, body, principal, hints, created, updated)"
                " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?) ON CONFLICT(idem_key) DO NOTHING",
                (job_id, key, json.dumps(body), json.dumps(principal), json.dumps(hints), now, now),
            )
            row = self._db.execute("SELECT * FROM jobs WHERE idem_key = ?", (key,)).fetchone()
        return _row_to_job(row)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row else None

    def claim(self, owner: str, *, lease_s: float, limit: int = 1) -> list[Job]:
        """Take up to ``limit`` jobs that are queued and due (not backing off), or running
        under an expired lease (their drainer died), oldest first."""
        now = time.time()
        due = "(status = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= ?))"
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                ids = [r["id"] for r in self._db.execute(
                    f"SELECT id FROM jobs WHERE {due} OR (status = 'running' AND lease_until < ?)"
                    " ORDER BY created LIMIT ?", (now, now, limit))]
                for job_id in ids:
                    # Same condition as the SELECT, inside the same write transaction.
                    self._db.execute(
                        "UPDATE jobs SET status = 'running', lease_owner = ?, lease_until = ?,"
                        " attempts = attempts + 1, updated = ? WHERE id = ?"
                        f" AND ({due} OR (status = 'running' AND lease_until < ?))",
                        (owner, now + lease_s, now, job_id, now, now))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            rows = [self._db.execute("SELECT * FROM jobs WHERE id = ?", (i,)).fetchone() for i in ids]
        return [_row_to_job(r) for r in rows]

    def _transition(self, sql: str, args: tuple[Any, ...]) -> bool:
        with self._lock:
            return self._db.execute(sql, args).rowcount == 1

    def complete(self, job_id: str, owner: str, result: dict[str, Any], http_status: int = 200) -> bool:
        """Record the result once: only the lease holder of a running job may."""
        now = time.time()
        return self._transition(
            "UPDATE jobs SET status = 'done', result = ?, http_status = ?, error = NULL, lease_owner = NULL,"
            " lease_until = NULL, updated = ?, completed = ? WHERE id = ? AND status = 'running' AND lease_owner = ?",
            (json.dumps(result), http_status, now, now, job_id, owner))

    def fail(self, job_id: str, owner: str, error: dict[str, Any], http_status: int | None = None) -> bool:
        """A permanent failure (the cloud rejected the request itself)."""
        now = time.time()
        return self._transition(
            "UPDATE jobs SET status = 'failed', error = ?, http_status = ?, lease_owner = NULL,"
            " lease_until = NULL, updated = ?, completed = ? WHERE id = ? AND status = 'running' AND lease_owner = ?",
            (json.dumps(error), http_status, now, now, job_id, owner))

    def release(self, job_id: str, owner: str, error: dict[str, Any] | None = None, *,
                delay_s: float = 0.0) -> bool:
        """Back to queued (a transient failure), not to be claimed for ``delay_s``; only
        the lease holder may."""
        now = time.time()
        return self._transition(
            "UPDATE jobs SET status = 'queued', error = ?, lease_owner = NULL, lease_until = NULL, updated = ?,"
            " next_attempt_at = ? WHERE id = ? AND status = 'running' AND lease_owner = ?",
            (json.dumps(error) if error else None, now, now + delay_s if delay_s > 0 else None, job_id, owner))

    def recover(self) -> int:
        """At start-up: jobs left running by a dead process go back to the queue.
        Safe because one agent owns a queue file (see :func:`lock_queue_file`); their
        idempotency keys make the resend a replay at the cloud, not a second execution."""
        with self._lock:
            return self._db.execute(
                "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_until = NULL, updated = ?"
                " WHERE status = 'running'", (time.time(),)).rowcount

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall()
        out = {"queued": 0, "running": 0, "done": 0, "failed": 0}
        out.update({r["status"]: r["n"] for r in rows})
        return out


def lock_queue_file(path: Path) -> int:
    """Hold an exclusive lock beside the queue for the life of the process (released by the
    OS on any exit, kill -9 included), so two agents never drain one queue."""
    import fcntl
    import os

    path = Path(path)
    private_dir(path.parent)
    fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(f"another tiergate edge agent is using {path}") from None
    return fd


class JobQueue:
    """The async face of :class:`JobStore`: every call runs in a worker thread."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.owner = "drainer-" + uuid.uuid4().hex[:12]

    async def enqueue(self, body: dict[str, Any], principal: dict[str, Any], hints: dict[str, str],
                      idem_key: str | None = None) -> Job:
        return await asyncio.to_thread(self.store.enqueue, body, principal, hints, idem_key)

    async def get(self, job_id: str) -> Job | None:
        return await asyncio.to_thread(self.store.get, job_id)

    async def claim(self, *, lease_s: float, limit: int = 1) -> list[Job]:
        return await asyncio.to_thread(self.store.claim, self.owner, lease_s=lease_s, limit=limit)

    async def complete(self, job_id: str, result: dict[str, Any], http_status: int = 200) -> bool:
        return await asyncio.to_thread(self.store.complete, job_id, self.owner, result, http_status)

    async def fail(self, job_id: str, error: dict[str, Any], http_status: int | None = None) -> bool:
        return await asyncio.to_thread(self.store.fail, job_id, self.owner, error, http_status)

    async def release(self, job_id: str, error: dict[str, Any] | None = None, *, delay_s: float = 0.0) -> bool:
        return await asyncio.to_thread(lambda: self.store.release(job_id, self.owner, error, delay_s=delay_s))

    async def counts(self) -> dict[str, int]:
        return await asyncio.to_thread(self.store.counts)

    async def recover(self) -> int:
        return await asyncio.to_thread(self.store.recover)
