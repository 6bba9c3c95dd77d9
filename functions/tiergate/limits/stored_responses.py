"""Stored Responses API responses (``store: true``), per API key, with a TTL.

One record per response in the ``responses`` table: ``pk`` = the key id of the caller that
created it, ``sk`` = the response id. Every read, continuation (``previous_response_id``)
and delete looks the record up under the *caller's* key id, so a key can never see another
key's response -- let alone another tenant's -- even if it learns the id. The record holds
the response object (``GET /v1/responses/{id}``) and the conversation as chat messages (what
a follow-up continues). ``expires_at`` is the TTL (DynamoDB deletes lazily; both stores
treat an expired record as absent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tiergate.errors import NotFound
from tiergate.limits.admission import Principal
from tiergate.stores.base import Cond, ConditionFailed, RecordStore

TABLE = "responses"


class ResponseStore:
    def __init__(self, store: RecordStore, *, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._clock = clock

    async def put(self, principal: Principal, response: dict[str, Any], history: list[dict[str, Any]]) -> None:
        now = int(self._clock())
        rec = {"pk": principal.key_id, "sk": response["id"], "tenant": principal.tenant, "created_at": now,
               "expires_at": now + self.ttl_s, "response": response, "history": history}
        # Write-once ("absent"): response ids are fresh random ids, so an existing live
        # record under this key means a collision, and a stored response is never replaced.
        await self.store.put(TABLE, rec, Cond(absent=True, now=now))

    async def get(self, principal: Principal, response_id: str, *, param: str | None = None) -> dict[str, Any]:
        rec = await self.store.get(TABLE, principal.key_id, response_id)
        if rec is None:
            raise NotFound(f"No response with id '{response_id}' found for this API key", param=param)
        return rec

    async def delete(self, principal: Principal, response_id: str) -> None:
        try:
            # "exists": deleting an unknown (or another key's) id is a 404, not a silent success.
            await self.store.delete(TABLE, principal.key_id, response_id, Cond(exists=True))
        except ConditionFailed:
            raise NotFound(f"No response with id '{response_id}' found for this API key") from None
