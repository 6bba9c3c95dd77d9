"""The no-store admission: a master key (or none, for loopback-only binding), no limits,
the last usage records kept in memory."""

from __future__ import annotations

import hmac
import time
from typing import Any

from tiergate.errors import AuthenticationFailed
from tiergate.limits.admission import AdmissionRequest, Outcome, Principal, Ticket, bearer_token
from tiergate.limits.usage import MemoryLedger


class MasterKeyAdmission:
    """Master key only, no limits; the last usage records kept in memory."""

    def __init__(self, master_key: str | None, *, keep: int = 10_000) -> None:
        self._master = master_key
        self.ledger = MemoryLedger(keep=keep)

    async def authenticate(self, authorization: str | None) -> Principal:
        if self._master is None:
            # No key configured: the server binds to loopback only (see cli.serve).
            return Principal(key_id="local", tenant="local", is_master=True)
        token = bearer_token(authorization)
        if token is None:
            raise AuthenticationFailed("Missing bearer token: send 'Authorization: Bearer <key>'")
        if not hmac.compare_digest(token.encode(), self._master.encode()):
            raise AuthenticationFailed("Invalid API key")
        return Principal(key_id="master", tenant="master", is_master=True)

    async def admit(self, principal: Principal, req: AdmissionRequest) -> Ticket:
        return Ticket(
            request_id=req.request_id, principal=principal, deployment=req.deployment,
            reserved_usd=req.estimate_usd, reserved_tokens=req.prompt_tokens + req.max_output_tokens,
        )

    async def settle(self, ticket: Ticket, outcome: Outcome) -> None:
        self.ledger.add(ticket, outcome, now=time.time())

    def tier_ceiling(self, principal: Principal) -> int | None:
        return None  # no budgets

    async def restore(self, snapshot: dict[str, Any]) -> Principal:
        return Principal.from_snapshot(snapshot)

    async def aclose(self) -> None:
        return None
