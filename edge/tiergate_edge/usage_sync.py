"""Local usage records -> the cloud's usage ingest, when online.

Requests answered by the local model never reach the cloud, so their usage records are
written to a SQLite outbox (durable at commit) by :class:`RecordingAdmission`, and
:class:`UsageSync` posts them in batches to ``POST <cloud>/v1/usage/ingest`` whenever the
cloud is up. Each record has a unique ``id`` (the request id), so a batch resent after a
crash is deduplicated by the cloud; rows are deleted only after a 2xx. A batch the cloud
refuses as invalid (400/413/422) is resent record by record: the accepted ones are deleted,
the refused ones moved to ``usage_rejected`` (kept, with the cloud's error, and counted in
``/health``), so one bad record never blocks the records behind it.
Offloaded requests are not recorded here: the cloud gateway records them itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from tiergate.config.adapters import LLAMA_CPP
from tiergate.limits.admission import Admission, AdmissionRequest, Outcome, Principal, Ticket
from tiergate.stores.files import private_file
from tiergate_edge.background import WakeLoop
from tiergate_edge.cloud_client import CloudClient, CloudUnreachable
from tiergate_edge.connectivity import CloudHealth

log = logging.getLogger("tiergate.edge.usage")
#: Statuses that say a record is invalid (it will never be accepted as it is).
INVALID = frozenset({400, 413, 422})


class UsageOutbox:
    def __init__(self, path: Path) -> None:
        private_file(path)  # usage records waiting for the cloud: 0600, dir 0700
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("CREATE TABLE IF NOT EXISTS usage_outbox (id TEXT PRIMARY KEY, record TEXT NOT NULL,"
                             " created REAL NOT NULL)")
            # Records the cloud refused as invalid: kept (never lost), out of the queue's way.
            self._db.execute("CREATE TABLE IF NOT EXISTS usage_rejected (id TEXT PRIMARY KEY, record TEXT NOT NULL,"
                             " created REAL NOT NULL, reason TEXT NOT NULL)")

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            # OR IGNORE: a record is keyed by its request id and written once.
            self._db.execute("INSERT OR IGNORE INTO usage_outbox (id, record, created) VALUES (?, ?, ?)",
                             (record["id"], json.dumps(record), time.time()))

    def batch(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM usage_outbox ORDER BY created LIMIT ?", (limit,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def remove(self, ids: list[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM usage_outbox WHERE id = ?", [(i,) for i in ids])

    def reject(self, record_id: str, reason: str) -> None:
        """Move a record the cloud refused (400) out of the queue, into ``usage_rejected``."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT OR REPLACE INTO usage_rejected (id, record, created, reason) "
                                 "SELECT id, record, created, ? FROM usage_outbox WHERE id = ?", (reason, record_id))
                self._db.execute("DELETE FROM usage_outbox WHERE id = ?", (record_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def rejected(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM usage_rejected").fetchone()[0]

    def pending(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM usage_outbox").fetchone()[0]

    def oldest_age_s(self, now: float | None = None) -> float:
        """How long the oldest unsynced record has waited (0 when all are synced): the sync lag."""
        with self._lock:
            oldest = self._db.execute("SELECT MIN(created) FROM usage_outbox").fetchone()[0]
        return 0.0 if oldest is None else max(0.0, (now or time.time()) - oldest)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RecordingAdmission:
    """Wraps an :class:`~tiergate.limits.admission.Admission`; settles through it, then puts the
    usage of locally answered requests into the outbox."""

    def __init__(self, inner: Admission, outbox: UsageOutbox, *, device: str) -> None:
        self._inner = inner
        self._outbox = outbox
        self._device = device

    async def authenticate(self, authorization: str | None) -> Principal:
        return await self._inner.authenticate(authorization)

    async def admit(self, principal: Principal, req: AdmissionRequest) -> Ticket:
        return await self._inner.admit(principal, req)

    def tier_ceiling(self, principal: Principal) -> int | None:
        return self._inner.tier_ceiling(principal)

    async def restore(self, snapshot: dict[str, Any]) -> Principal:
        return await self._inner.restore(snapshot)

    async def settle(self, ticket: Ticket, outcome: Outcome) -> None:
        await self._inner.settle(ticket, outcome)
        dep = outcome.deployment
        # A cache hit never reaches the cloud, whichever deployment first answered it.
        if dep is None or (dep.adapter != LLAMA_CPP and not outcome.cache_hit):
            return
        record = {"id": ticket.request_id, "source": "edge", "device": self._device,
                  "key_id": ticket.principal.key_id, "tenant": ticket.principal.tenant, "model": dep.name,
                  "tier": dep.tier, "prompt_tokens": outcome.prompt_tokens,
                  "completion_tokens": outcome.completion_tokens, "cost_usd": outcome.cost_usd,
                  "latency_ms": round(outcome.latency_ms, 2), "attempts": outcome.attempts,
                  "outcome": outcome.outcome, "cache_hit": outcome.cache_hit, "saved_usd": outcome.saved_usd,
                  "ts": time.time()}
        await asyncio.to_thread(self._outbox.add, record)

    async def start(self) -> None:
        await self._inner.start()

    async def aclose(self) -> None:
        await self._inner.aclose()


class UsageSync:
    def __init__(self, outbox: UsageOutbox, cloud: CloudClient, health: CloudHealth, *,
                 interval_s: float = 30.0, batch: int = 200) -> None:
        self.outbox = outbox
        self._cloud = cloud
        self._health = health
        self._interval = interval_s
        self._batch = batch
        self._runner = WakeLoop("tiergate-usage-sync", self.sync_once, interval_s=interval_s, log=log)
        self.synced = 0
        self.rejected = 0
        self.last_error: str | None = None

    async def on_recovery(self) -> None:
        self._runner.wake()

    async def sync_once(self) -> int:
        """Send what is pending while the cloud is up; returns records acknowledged."""
        sent = 0
        while self._health.is_up:
            records = await asyncio.to_thread(self.outbox.batch, self._batch)
            if not records:
                break
            try:
                status, data = await self._cloud.ingest_usage(records)
            except CloudUnreachable as e:
                self._health.mark_down(f"usage sync: {e}")
                self.last_error = str(e)
                break
            if status in INVALID:
                # The batch holds a record the cloud will never take (an older agent's
                # field, a corrupt row): sent one by one, the good ones go through and the
                # refused ones are set aside, so one record never blocks the queue.
                done = await self._one_by_one(records, data)
                sent += done
                if done < 0:
                    break
                continue
            if not 200 <= status < 300:
                self.last_error = f"usage ingest returned {status}"
                break
            await asyncio.to_thread(self.outbox.remove, [r["id"] for r in records])
            sent += len(records)
            self.synced += len(records)
            self.last_error = None
        return sent

    async def _one_by_one(self, records: list[dict[str, Any]], batch_error: Any) -> int:
        """Each record on its own: acknowledged ones removed, invalid ones rejected.
        Returns how many were acknowledged, or -1 when the cloud stopped answering."""
        sent = 0
        for r in records:
            try:
                status, data = await self._cloud.ingest_usage([r])
            except CloudUnreachable as e:
                self._health.mark_down(f"usage sync: {e}")
                self.last_error = str(e)
                return -1
            if 200 <= status < 300:
                await asyncio.to_thread(self.outbox.remove, [r["id"]])
                sent += 1
                self.synced += 1
            elif status in INVALID:
                reason = json.dumps(data)[:2000]
                log.warning("usage record %s refused by the cloud (%s), set aside: %s", r.get("id"), status, reason)
                await asyncio.to_thread(self.outbox.reject, r["id"], reason)
                self.rejected += 1
            else:
                self.last_error = f"usage ingest returned {status}"
                return -1
        self.last_error = None
        return sent

    async def start(self) -> None:
        self._runner.start()

    async def stop(self) -> None:
        await self._runner.stop()
