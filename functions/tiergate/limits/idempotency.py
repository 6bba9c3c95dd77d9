"""``Idempotency-Key``: a retried request returns the first response without paying twice.

The Powertools idempotency shape on our record store: one record per (caller, key) in
the ``idempotency`` table, ``status`` = ``in_progress`` | ``completed``.

* :meth:`Idempotency.begin` writes ``in_progress`` with the condition "absent or
  expired". Exactly one concurrent duplicate wins; the others find the record:
  ``completed`` with the same request hash -> :class:`Hit` (the stored response); a
  different hash -> 409 (the key was reused for another request); ``in_progress`` ->
  wait up to ``wait_s`` for it to complete, then 409 with ``Retry-After``.
* The ``in_progress`` record is a **lease** of ``lease_s`` (15 s by default), renewed by
  :meth:`keep` while its request runs: a holder that dies (``kill -9``) stops renewing,
  and its lease is lost within ``lease_s`` -- a retry then takes the key over, instead of
  getting 409 for the ten minutes a fixed lock would last.
* :meth:`complete` stores the response, conditional on still owning the lock (token).
* :meth:`fail` deletes the lock (same condition) so the client may retry.

Call site (chat route)::

    started = None
    if (idem_key := request.headers.get("idempotency-key")):
        got = await idem.begin(principal.key_id, idem_key, request_hash(body))
        if isinstance(got, Hit):
            return JSONResponse(got.body, status_code=got.status, headers=got.headers)
        started = got
    ...  # on success: await idem.complete(started, 200, body, headers); on error: await idem.fail(started)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from tiergate.errors import Conflict, InvalidRequest
from tiergate.stores.base import Cond, ConditionFailed, RecordStore

TABLE = "idempotency"
SK = "idem"


def request_hash(body: Any) -> str:
    """A stable hash of the request body (dict or raw bytes)."""
    raw = body if isinstance(body, bytes) else json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, slots=True)
class Hit:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Started:
    pk: str
    token: str
    request_hash: str


class Idempotency:
    def __init__(self, store: RecordStore, *, ttl_s: int = 86400, lease_s: float = 15.0,
                 wait_s: float = 0.0, poll_s: float = 0.1, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.ttl_s = ttl_s
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._clock = clock

    async def begin(self, key_scope: str, key: str, request_hash: str) -> Hit | Started:
        if not key or len(key) > 255:
            raise InvalidRequest("Idempotency-Key must be 1-255 characters", param="Idempotency-Key")
        pk = f"{key_scope}#{key}"
        deadline = self._clock() + self.wait_s
        while True:
            now = int(self._clock())
            token = uuid.uuid4().hex
            rec = self._lease_record(pk, token, request_hash, now)
            try:
                # Condition "absent or expired": only one duplicate takes the lock; an
                # expired lock or old response no longer blocks the key.
                await self._store.put(TABLE, rec, Cond(absent=True, now=now))
                return Started(pk, token, request_hash)
            except ConditionFailed:
                pass
            cur = await self._store.get(TABLE, pk, SK)
            if cur is None:
                continue  # expired or deleted between our put and get: try again
            if cur.get("request_hash") != request_hash:
                raise Conflict("This Idempotency-Key was already used with a different request",
                               param="Idempotency-Key")
            if cur.get("status") == "completed":
                return Hit(int(cur["response_status"]), cur["response_body"], dict(cur.get("response_headers") or {}))
            if self._clock() >= deadline:
                left = max(1, int(float(cur.get("expires_at") or 0) - self._clock() + 0.999))
                raise Conflict("A request with this Idempotency-Key is still in progress; retry later",
                               param="Idempotency-Key", headers={"retry-after": str(min(left, 60))})
            await asyncio.sleep(self.poll_s)

    def _lease_record(self, pk: str, token: str, request_hash: str, now: float) -> dict[str, Any]:
        # expires_at is whole seconds (the TTL attribute): round the lease up.
        return {"pk": pk, "sk": SK, "status": "in_progress", "token": token, "request_hash": request_hash,
                "expires_at": int(now + self.lease_s + 0.999)}

    @contextlib.asynccontextmanager
    async def keep(self, started: Started) -> AsyncIterator[None]:
        """Renew ``started``'s lease every third of ``lease_s`` while the block runs."""
        task = asyncio.create_task(self._renew(started), name="tiergate-idempotency-lease")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _renew(self, started: Started) -> None:
        while True:
            await asyncio.sleep(max(0.05, self.lease_s / 3))
            rec = self._lease_record(started.pk, started.token, started.request_hash, self._clock())
            try:
                # Condition "still our lease, still in progress": never revive a lease that
                # was lost and taken over, nor overwrite a completed response.
                await self._store.put(TABLE, rec, Cond(equals={"token": started.token, "status": "in_progress"}))
            except ConditionFailed:
                return

    async def complete(self, started: Started, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        rec = {"pk": started.pk, "sk": SK, "status": "completed", "token": started.token,
               "request_hash": started.request_hash, "response_status": status, "response_body": body,
               "response_headers": dict(headers or {}), "expires_at": int(self._clock()) + self.ttl_s}
        try:
            # Condition "still our lock": a lock that expired and was taken over by a
            # retry is not overwritten by the slow original.
            await self._store.put(TABLE, rec, Cond(equals={"token": started.token, "status": "in_progress"}))
        except ConditionFailed:
            pass

    async def fail(self, started: Started) -> None:
        try:
            # Condition "still our lock": release only what we hold.
            await self._store.delete(TABLE, started.pk, SK, Cond(equals={"token": started.token}))
        except ConditionFailed:
            pass
