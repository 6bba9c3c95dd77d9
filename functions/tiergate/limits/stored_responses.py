"""Stored Responses API responses (``store: true``), per API key, with a TTL.

One record per response in the ``responses`` table: ``pk`` = the key id of the caller that
created it, ``sk`` = the response id. Every read, continuation (``previous_response_id``)
and delete looks the record up under the *caller's* key id, so a key can never see another
key's response -- let alone another tenant's -- even if it learns the id. The record holds
the response object (``GET /v1/responses/{id}``) and the conversation as chat messages (what
a follow-up continues). ``expires_at`` is the TTL (DynamoDB deletes lazily; both stores
treat an expired record as absent).

Size: a DynamoDB item holds at most 400 KB, and the history grows with every turn. Every
store keeps the same bound (:data:`ITEM_LIMIT_BYTES`, counted as DynamoDB counts an item:
:func:`item_size`), so a conversation behaves the same locally and in the cloud. A record
over it keeps its newest whole turns: the oldest turns are dropped (never a tool call
without its result) and the first message kept says so (:func:`dropped_marker`), so the
model and whoever reads the conversation know context is missing. If even the newest turn
does not fit, the response is stored without its conversation and a follow-up naming it
gets a 400 saying why; if the response object alone does not fit, it is not stored (the
answer still goes out, with ``store: false``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tiergate.errors import InvalidRequest, NotFound
from tiergate.limits.admission import Principal
from tiergate.stores.base import Cond, ConditionFailed, RecordStore

TABLE = "responses"
#: DynamoDB's item size limit (attribute names and values), kept by every store.
ITEM_LIMIT_BYTES = 400 * 1024
#: What a record may use: 8 KB below the limit for what :func:`item_size` counts loosely
#: (numbers are counted at their widest).
RECORD_BUDGET = ITEM_LIMIT_BYTES - 8 * 1024


def item_size(value: Any) -> int:
    """The size DynamoDB counts for a value: UTF-8 strings, numbers at their widest (21
    bytes), 1 byte for booleans and nulls, lists and maps 3 bytes plus 1 per element
    (and, in maps, the keys' UTF-8 length). An upper bound of the stored item's size."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int | float):
        return 21
    if isinstance(value, Mapping):
        return 3 + sum(len(str(k).encode()) + item_size(v) + 1 for k, v in value.items())
    if isinstance(value, list | tuple):
        return 3 + sum(item_size(v) + 1 for v in value)
    return len(str(value).encode())


def dropped_marker(n: int) -> str:
    return (f"[tiergate: the {n} oldest messages of this conversation were dropped: the stored conversation "
            f"exceeded the {ITEM_LIMIT_BYTES // 1024} KB limit of a stored response]")


_MARKER = re.compile(r"\[tiergate: the (\d+) oldest messages of this conversation were dropped")


def _dropped_before(history: list[dict[str, Any]]) -> int:
    """How many messages an earlier turn's store already dropped (its note on the first message)."""
    content = history[0].get("content") if history else None
    if isinstance(content, list):
        content = next((p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"), None)
    m = _MARKER.match(content) if isinstance(content, str) else None
    return int(m.group(1)) if m else 0


def _marked(message: Mapping[str, Any], n: int) -> dict[str, Any]:
    """``message`` with the dropped-history note in front of its content."""
    note = dropped_marker(n)
    content = message.get("content")
    if isinstance(content, list):
        return {**message, "content": [{"type": "text", "text": note}, *content]}
    return {**message, "content": f"{note}\n\n{content}" if content else note}


@dataclass(frozen=True, slots=True)
class Kept:
    """What :meth:`ResponseStore.put` kept."""

    #: Oldest history messages this put dropped to fit the item limit (0: all kept); the note
    #: on the first kept message counts the earlier turns' drops too.
    dropped: int = 0
    #: False: not even the newest turn fit; the response is stored without its conversation.
    history: bool = True
    #: False: the response object alone exceeds the limit; nothing was stored.
    stored: bool = True


class ResponseStore:
    def __init__(self, store: RecordStore, *, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._clock = clock

    async def put(self, principal: Principal, response: dict[str, Any], history: list[dict[str, Any]], *,
                  native: bool = False) -> Kept:
        """Store ``response`` and the conversation a follow-up continues, within the item
        limit (see the module docstring): the whole conversation when it fits. ``native``:
        OpenAI's own Responses API produced it (OpenAI knows its id too)."""
        now = int(self._clock())
        rec: dict[str, Any] = {"pk": principal.key_id, "sk": response["id"], "tenant": principal.tenant,
                               "created_at": now, "expires_at": now + self.ttl_s, "response": response}
        if native:
            rec["native"] = True
        base = item_size(rec) + len("history") + 3  # the record with an empty history list
        if base > RECORD_BUDGET:
            return Kept(dropped=len(history), history=False, stored=False)
        sizes = [item_size(m) + 1 for m in history]
        total, kept = base + sum(sizes), Kept()
        if total > RECORD_BUDGET:
            kept, earlier = Kept(dropped=len(history), history=False), _dropped_before(history)
            for i in range(len(history)):  # drop whole turns, oldest first: cut where a user turn starts
                total -= sizes[i]
                nxt = history[i + 1] if i + 1 < len(history) else None
                if nxt is None or nxt.get("role") != "user":
                    continue
                first = _marked(nxt, earlier + i + 1)  # the note counts every turn's drops
                if total - sizes[i + 1] + item_size(first) + 1 <= RECORD_BUDGET:
                    history = [first, *history[i + 2:]]
                    kept = Kept(dropped=i + 1)
                    break
        if kept.history:
            rec["history"] = history
        if kept.dropped:
            rec["history_dropped"] = kept.dropped  # what this turn's record cut
        # Write-once ("absent"): response ids are fresh random ids, so an existing live
        # record under this key means a collision, and a stored response is never replaced.
        await self.store.put(TABLE, rec, Cond(absent=True, now=now))
        return kept

    async def get(self, principal: Principal, response_id: str, *, param: str | None = None) -> dict[str, Any]:
        rec = await self.store.get(TABLE, principal.key_id, response_id)
        if rec is None:
            raise NotFound(f"No response with id '{response_id}' found for this API key", param=param)
        return rec

    async def history(self, principal: Principal, response_id: str) -> list[dict[str, Any]]:
        """The conversation ``previous_response_id`` continues (400 if it was too large to keep)."""
        return self.history_of(await self.get(principal, response_id, param="previous_response_id"))

    @staticmethod
    def history_of(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
        response_id = rec["sk"]
        if rec.get("history") is None:
            raise InvalidRequest(
                f"The conversation of response '{response_id}' was not kept: its newest turn alone exceeds the "
                f"{ITEM_LIMIT_BYTES // 1024} KB limit of a stored response. Send the conversation as 'input' "
                "without 'previous_response_id'", param="previous_response_id")
        return rec["history"]

    async def delete(self, principal: Principal, response_id: str) -> None:
        try:
            # "exists": deleting an unknown (or another key's) id is a 404, not a silent success.
            await self.store.delete(TABLE, principal.key_id, response_id, Cond(exists=True))
        except ConditionFailed:
            raise NotFound(f"No response with id '{response_id}' found for this API key") from None
