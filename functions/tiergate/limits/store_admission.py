"""The store-backed :class:`tiergate.limits.admission.Admission`: virtual keys, rate limits,
budgets and the usage ledger.

Round trips on the hot path:

* ``authenticate``: none while the key is cached (``key_cache_ttl_s``), else one GetItem.
* ``admit``: **one** store call. Every rate-limit counter (RPM/TPM per key and per
  deployment) and every budget counter (key/tenant/global x day/month, tier allocation)
  goes into a single all-or-nothing :meth:`RecordStore.bump` -- one ``BEGIN IMMEDIATE``
  transaction on SQLite, parallel conditional UpdateItems with compensation on DynamoDB.
  Only a budget rejection costs more: expired holds on that counter are reclaimed and
  the bump retried once (at most two more calls, on the rejection path).
* ``settle``: one store call (SQLite: one transaction writing counters, usage record and
  metrics), or with an :class:`Outbox` one local journal append plus background writes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from tiergate.config.catalog import Catalog
from tiergate.errors import AuthenticationFailed, PermissionDenied
from tiergate.limits import budgets, ratelimit
from tiergate.limits.admission import AdmissionRequest, Outcome, Principal, Ticket, bearer_token
from tiergate.limits.budgets import BudgetScope, to_nano
from tiergate.limits.outbox import Outbox, decode, encode
from tiergate.limits.usage import metric_corrections, usage_record
from tiergate.limits.virtual_keys import API_SCOPE, SECRET_PREFIX, KeyService, VirtualKey
from tiergate.settings import Settings
from tiergate.stores.base import Bump, Correction, RecordStore, Rejected, Settlement

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reservation:
    """What :meth:`StoreAdmission.settle` must undo or settle (``Ticket.handles[0]``)."""

    hold_id: str
    budget_bumps: tuple[Bump, ...]
    token_bumps: tuple[Bump, ...]


class StoreAdmission:
    def __init__(self, settings: Settings, catalog: Catalog, store: RecordStore, *,
                 keys: KeyService | None = None, outbox: Outbox | None = None, owns_store: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.cfg = catalog.budgets
        self.keys = keys or KeyService(store, cache_ttl_s=settings.key_cache_ttl_s, clock=clock)
        self._master = settings.master_key.get_secret_value() if settings.master_key else None
        self._outbox = outbox
        self._owns_store = owns_store
        self._recovered = False
        self._started_at = time.time()
        self._clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        #: principal key id -> (until, max tier) from the last admission (a hint for routing).
        self._ceilings: dict[str, tuple[float, int | None]] = {}

    # --- authenticate -----------------------------------------------------------------

    async def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        if token is None:
            if self._master is None:
                # No master key: the server binds to loopback only (see cli.serve).
                return Principal(key_id="local", tenant="local", is_master=True)
            raise AuthenticationFailed("Missing bearer token: send 'Authorization: Bearer <key>'")
        if self._master is not None and hmac.compare_digest(token.encode(), self._master.encode()):
            return Principal(key_id="master", tenant="master", is_master=True)
        key = await self.keys.lookup(token) if token.startswith(SECRET_PREFIX) else None
        if key is None:
            if self._master is None:
                # Open local mode (as MasterKeyAdmission): any other token is the local user.
                return Principal(key_id="local", tenant="local", is_master=True)
            raise AuthenticationFailed("Invalid API key")
        why = key.usable(self._clock())
        if why is not None:
            raise AuthenticationFailed(why)
        return principal_for(key)

    async def restore(self, snapshot: dict[str, Any]) -> Principal:
        """A virtual key's principal is rebuilt from its record (budgets, limits, revocation);
        the master and the open local user from the snapshot."""
        key_id = str(snapshot.get("key_id") or "")
        if snapshot.get("is_master") or not key_id.startswith("key_"):
            return Principal.from_snapshot(snapshot)
        key = await self.keys.get(key_id)
        why = key.usable(self._clock())
        if why is not None:
            raise AuthenticationFailed(why)
        return principal_for(key)

    # --- admit ------------------------------------------------------------------------

    async def admit(self, principal: Principal, req: AdmissionRequest) -> Ticket:
        dep = req.deployment
        key: VirtualKey | None = principal.metadata.get("key")
        if key is not None and API_SCOPE not in key.scopes:
            raise PermissionDenied("This API key has no 'api' scope (it may only read the dashboard)")
        if not principal.may_use(dep):
            raise PermissionDenied(f"This API key may not use model {dep.name!r} (tier {dep.tier})",
                                   param="model")
        now = self._clock()
        if req.free:
            return await self._admit_free(principal, key, req, now)
        tenant = None if principal.is_master else principal.tenant
        budgets.check_per_request(self.cfg, key=key, tenant=tenant, estimate_usd=req.estimate_usd)
        tokens = req.prompt_tokens + req.max_output_tokens
        rchecks = ratelimit.checks(
            key_id=principal.key_id, key_rpm=key.rpm if key else None, key_tpm=key.tpm if key else None,
            deployment_id=dep.deployment_id, dep_rpm=dep.rpm, dep_tpm=dep.tpm, tokens=tokens, now=now)
        scopes = budgets.scopes(self.cfg, key=key, tenant=tenant, tier=dep.tier, now=now)
        est = to_nano(req.estimate_usd)
        for s in scopes:
            if est > s.limit:
                raise budgets.exceeded(s, 0, est)
        hold = uuid.uuid4().hex[:20]
        hold_exp = int(now) + self.cfg.reservation_ttl_s
        rbumps = [c.bump() for c in rchecks]
        bbumps = [s.bump(est, hold, hold_exp) for s in scopes]
        used = await self._bump(rbumps + bbumps, rchecks, scopes, est, now)

        headers = ratelimit.headers(rchecks, dict(zip(rchecks, used, strict=False)), now)
        soft = budgets.soft_state(scopes, used[len(rchecks):], self.cfg.soft_limit_fraction, dep.tier)
        if soft.header:
            headers["x-tiergate-budget"] = soft.header
        self._ceilings[principal.key_id] = (time.monotonic() + max(1.0, self.settings.key_cache_ttl_s),
                                            soft.max_tier)
        token_bumps = tuple(b for c, b in zip(rchecks, rbumps, strict=True) if c.kind == "tokens")
        return Ticket(
            request_id=req.request_id, principal=principal, deployment=dep, reserved_usd=req.estimate_usd,
            reserved_tokens=tokens, soft_limited=soft.soft, max_tier=soft.max_tier, headers=headers,
            budget_utilization_percent=soft.utilization_percent,
            handles=[Reservation(hold, tuple(bbumps), token_bumps)])

    async def _admit_free(self, principal: Principal, key: VirtualKey | None, req: AdmissionRequest,
                          now: float) -> Ticket:
        """A free call takes a slot of the key's RPM window and nothing else (no hold: settle
        writes only its usage record)."""
        rchecks = ratelimit.checks(key_id=principal.key_id, key_rpm=key.rpm if key else None, key_tpm=None,
                                   deployment_id=req.deployment.deployment_id, dep_rpm=None, dep_tpm=None,
                                   tokens=0, now=now)
        used = await self._bump([c.bump() for c in rchecks], rchecks, [], 0, now)
        return Ticket(request_id=req.request_id, principal=principal, deployment=req.deployment, reserved_usd=0.0,
                      reserved_tokens=0, headers=ratelimit.headers(rchecks, dict(zip(rchecks, used, strict=True)), now))

    async def _bump(self, bumps: list[Bump], rchecks: list[ratelimit.RateCheck], scopes: list[BudgetScope],
                    est: int, now: float) -> list[int]:
        if not bumps:
            return []
        for attempt in range(2):
            try:
                return await self.store.bump(bumps, now=int(now))
            except Rejected as r:
                if r.index < len(rchecks):
                    raise ratelimit.rejected(rchecks[r.index], now) from None
                s = scopes[r.index - len(rchecks)]
                # Full: maybe of reservations whose requests died. Reclaim those and retry once.
                if attempt == 0 and await self.store.reclaim(s.key, now=int(now)) > 0:
                    continue
                raise budgets.exceeded(s, r.used, est) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def tier_ceiling(self, principal: Principal) -> int | None:
        """The tier ceiling the caller's last admission suggested (soft limit), if recent.
        No store access: a hint for routing *before* admission."""
        hit = self._ceilings.get(principal.key_id)
        return hit[1] if hit and hit[0] > time.monotonic() else None

    # --- settle -----------------------------------------------------------------------

    async def settle(self, ticket: Ticket, outcome: Outcome) -> None:
        """Durable when it returns: the store has the settlement, or the local journal has.

        Call it before the response is completed (it is one short transaction, or one
        journal append) so that nothing is lost if the process dies afterwards."""
        res = next((h for h in ticket.handles if isinstance(h, Reservation)), None)
        now = self._clock()
        actual = to_nano(outcome.cost_usd)
        settlements = [Settlement(b.key, res.hold_id, b.amount, actual) for b in res.budget_bumps] if res else []
        used_tokens = outcome.prompt_tokens + outcome.completion_tokens
        corrections = [Correction(b.key, used_tokens - b.amount) for b in (res.token_bumps if res else ())
                       if used_tokens != b.amount]
        rec = usage_record(ticket, outcome, now=now, retention_days=self.cfg.usage_retention_days)
        if res:
            rec["sk"] += "#" + res.hold_id  # one record per admission (cascade steps share a request id)
        corrections += metric_corrections(rec, now=now)
        records = [("usage", rec)]
        if self._outbox is None:
            await self.store.settle(settlements, corrections, records)
            return
        if not self._recovered:  # first settlement of this process: replay a crash's leftovers
            self._recovered = True
            self._spawn(self.recover(older_than_s=time.time() - self._started_at))
        entry = rec["sk"]
        await self._outbox.append(entry, encode(settlements, corrections, records))
        self._spawn(self._flush(entry, settlements, corrections, records))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, entry: str, *parts: list) -> None:
        assert self._outbox is not None
        try:
            await self.store.settle(*parts)
        except Exception:  # the journal keeps it; recover() replays it
            log.exception("settlement %s not written to the store; kept in the outbox", entry)
            return
        await self._outbox.done(entry)

    async def recover(self, *, older_than_s: float = 0.0) -> int:
        """Replay journal entries left by a crash or a store outage (done by the first
        settlement of a process, and at shutdown; call it periodically if you like)."""
        if self._outbox is None:
            return 0
        self._recovered = True
        n = 0
        for entry, payload in await self._outbox.pending(older_than_s=older_than_s):
            await self._flush(entry, *decode(payload))
            n += 1
        return n

    async def drain(self) -> None:
        """Wait for background settlements (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        if self._outbox is not None:
            await self.recover()
            await self._outbox.aclose()
        if self._owns_store:
            await self.store.aclose()


def principal_for(key: VirtualKey) -> Principal:
    return Principal(
        key_id=key.key_id, tenant=key.tenant, is_master=False, allowed_tiers=key.tiers,
        allowed_models=frozenset(key.allowed_models) if key.allowed_models is not None else None,
        metadata={"key": key})
