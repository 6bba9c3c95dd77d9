"""Session affinity: a conversation does not switch models mid-way.

A request continues a session when it names one (``x-tiergate-session``, or the body's
``user`` / ``metadata.session_id``) or continues a tool loop (it carries tool results:
the session is the first tool call's id, which the deployment that made the call
produced). The deployment that served the session's first request is remembered, per
tenant, with a TTL; later requests of the session go there first while it is usable
(the gateway checks), and the route reason says so. Switching models mid-loop breaks
agents and throws away the provider's prompt cache.

Records live in the store's ``idempotency`` table (TTL'd records): ``pk =
"affinity:<tenant>"``, ``sk`` = sha256 of the session key, written with the condition
"absent" (the first deployment wins; a concurrent second writer does not move it). The
edge, which has no record store, keeps them in memory.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from tiergate.request import GatewayRequest
from tiergate.stores.base import Cond, ConditionFailed, RecordStore

SESSION_HEADER = "x-tiergate-session"
TABLE = "idempotency"
DEFAULT_TTL_S = 3600
MAX_MEMORY = 10_000


def tool_call_id(message: Mapping[str, Any]) -> str | None:
    calls = message.get("tool_calls") or ()
    first = calls[0] if calls else None
    return str(first.get("id")) if isinstance(first, dict) and first.get("id") else None


def session_of(req: GatewayRequest) -> tuple[str, str] | None:
    """(kind, key) of the session this request belongs to, or None."""
    explicit = req.hint(SESSION_HEADER).strip()
    if explicit:
        return "session", explicit[:256]
    meta = req.body.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("session_id"), str) and meta["session_id"]:
        return "session", meta["session_id"][:256]
    if isinstance(req.body.get("user"), str) and req.body["user"]:
        return "user", req.body["user"][:256]
    if any(m.get("role") == "tool" for m in req.messages):
        for m in req.messages:
            if m.get("role") == "assistant" and (cid := tool_call_id(m)):
                return "tool", cid
    return None


def response_tool_call(response: Mapping[str, Any]) -> str | None:
    """The first tool call id of a chat.completion (the tool loop it starts)."""
    choices = response.get("choices") or ()
    msg = (choices[0].get("message") or {}) if choices else {}
    return tool_call_id(msg)


class Affinity:
    def __init__(self, store: RecordStore | None, *, ttl_s: int = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._clock = clock
        self._memory: dict[tuple[str, str], tuple[float, str]] = {}

    @staticmethod
    def _sk(kind: str, key: str) -> str:
        return hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()

    async def lookup(self, tenant: str, kind: str, key: str) -> str | None:
        """The deployment id pinned for this session, if any and not expired."""
        sk = self._sk(kind, key)
        if self.store is None:
            hit = self._memory.get((tenant, sk))
            return hit[1] if hit and hit[0] > self._clock() else None
        rec = await self.store.get(TABLE, f"affinity:{tenant}", sk)
        return str(rec["deployment"]) if rec else None

    async def remember(self, tenant: str, kind: str, key: str, deployment: str) -> None:
        sk = self._sk(kind, key)
        now = self._clock()
        if self.store is None:
            if len(self._memory) >= MAX_MEMORY:
                self._memory = {k: v for k, v in self._memory.items() if v[0] > now}
            self._memory.setdefault((tenant, sk), (now + self.ttl_s, deployment))
            return
        try:
            # Condition "absent" (or expired): the session's first deployment wins; a
            # concurrent request of the same session does not move the pin.
            await self.store.put(TABLE, {"pk": f"affinity:{tenant}", "sk": sk, "deployment": deployment,
                                         "kind": kind, "expires_at": int(now) + self.ttl_s}, Cond(absent=True))
        except ConditionFailed:
            pass
