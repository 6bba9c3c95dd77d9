"""The exact store contract: entries by key, written once, expiring.

A store only stores; the policy (what may be cached, for whom, how long) is above it in
:mod:`tiergate.cache.service`. Implementations: :mod:`tiergate.cache.sqlite` (local and
edge homes: one file, size-bounded, oldest evicted) and :mod:`tiergate.cache.dynamodb`
(the cloud: TTL attribute, conditional puts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached answer: the ``chat.completion`` body as first sent, and what it cost."""

    key: str
    tenant: str
    response: dict[str, Any]
    deployment_id: str
    cost_usd: float
    stored_at: float
    expires_at: float

    def encode(self) -> bytes:
        return orjson.dumps({"tenant": self.tenant, "response": self.response, "deployment_id": self.deployment_id,
                             "cost_usd": self.cost_usd, "stored_at": self.stored_at, "expires_at": self.expires_at})

    @classmethod
    def decode(cls, key: str, blob: bytes) -> Entry:
        d = orjson.loads(blob)
        return cls(key=key, tenant=d["tenant"], response=d["response"], deployment_id=d["deployment_id"],
                   cost_usd=float(d["cost_usd"]), stored_at=float(d["stored_at"]), expires_at=float(d["expires_at"]))


class ExactStore(Protocol):
    kind: str
    #: The largest encoded entry this store can hold (DynamoDB's item limit); None: no limit.
    max_entry_bytes: int | None

    async def get(self, key: str, *, now: float) -> Entry | None:
        """The live entry under ``key`` (an expired one is absent)."""
        ...

    async def put(self, entry: Entry, blob: bytes, *, replace: bool = False) -> bool:
        """Store ``entry`` (``blob`` = ``entry.encode()``). Without ``replace`` only if no
        live entry exists: concurrent stores of one key leave one winner and raise nothing.
        With ``replace`` (``x-tiergate-cache: refresh``) a newer entry replaces an older one.
        Returns whether the entry was taken: DynamoDB answers after its conditional put;
        SQLite after its in-process check, the write committing in the background (another
        process's earlier write may still win there, which loses nothing: an answer is cached)."""
        ...

    async def aclose(self) -> None: ...
