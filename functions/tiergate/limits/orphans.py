"""Reservations whose requests died are charged, never refunded.

A request holds its worst-case cost from admission to settlement. If its process dies in
between (``kill -9``, OOM, a Lambda timeout) or its settlement never lands, nobody knows
whether the provider answered and billed: the hold is an *orphan*, a call with an
unknown outcome. It is charged at its reservation -- the worst case it was sized for --
and written to the usage ledger with ``outcome: "orphaned"`` and ``charged:
"reservation"``. The usage record has the key the request's own settlement would have
written (admission time, request id, hold id), and both writes are write-once, so
whichever lands first wins and the other changes nothing: a slow request that settles
after its hold was charged is not counted twice.

Orphans are found (:meth:`RecordStore.orphaned_holds`) at startup -- on SQLite the holds
of dead processes at once, and expired ones; on DynamoDB expired ones -- by the periodic
sweep of a long-lived process, and on a budget rejection (the full counter's expired
holds). Charging leaves ``used`` as it is (the hold was already counted in it) and moves
the amount from reserved to spent, on every counter the hold was made on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from tiergate.limits.admission import Principal
from tiergate.limits.budgets import TABLE, period_bounds, to_nano, to_usd
from tiergate.limits.usage import iso, metric_corrections, record_sk
from tiergate.stores.base import Correction, CounterKey, HeldReservation, RecordStore, Settlement

log = logging.getLogger(__name__)

OUTCOME = "orphaned"


def hold_meta(*, request_id: str, principal: Principal, deployment: str, model: str, tier: int,
              admitted_at: float, prompt_tokens: int, max_output_tokens: int) -> str:
    """What a hold remembers of its request (compact JSON: it is stored on every counter)."""
    # ``ts`` exactly as admitted (not rounded): the usage record's key is derived from it,
    # and must be the one the request's own settlement would write.
    return orjson.dumps({"r": request_id, "k": principal.key_id, "t": principal.tenant, "d": deployment,
                         "m": model, "tier": tier, "ts": admitted_at, "p": prompt_tokens,
                         "o": max_output_tokens}).decode()


def _candidates(meta: dict[str, Any]) -> list[CounterKey]:
    """Every budget counter a reservation of this request could have held (each is charged
    only if it has the hold, so a scope without a limit costs one failed write)."""
    ts = float(meta["ts"])
    day, _ = period_bounds("day", ts)
    month, _ = period_bounds("month", ts)
    subjects = [("key", str(meta["k"])), ("tenant", str(meta["t"])), ("global", "all")]
    keys = [CounterKey(TABLE, f"b#{scope}#{sid}", pid) for scope, sid in subjects for pid in (day, month)]
    keys.append(CounterKey(TABLE, f"b#tier#{meta['tier']}", month))
    return keys


@dataclass(frozen=True, slots=True)
class OrphanCharge:
    hold_id: str
    settlements: list[Settlement]
    corrections: list[Correction]
    records: list[tuple[str, dict[str, Any]]]


def charges(holds: Iterable[HeldReservation], *, now: float, retention_days: int) -> list[OrphanCharge]:
    """One charge (a :meth:`RecordStore.settle` call) per orphaned reservation."""
    by_id: dict[str, list[HeldReservation]] = {}
    for h in holds:
        by_id.setdefault(h.hold_id, []).append(h)
    out = []
    for hold_id, hs in by_id.items():
        amount = max(h.amount for h in hs)
        meta = _meta(next((h.meta for h in hs if h.meta), ""))
        if meta is None:
            # A hold made before holds had a description: charge it where it was found.
            out.append(OrphanCharge(hold_id, [Settlement(h.key, hold_id, h.amount, h.amount, only_if_held=True)
                                              for h in hs], [], []))
            continue
        keys = list(dict.fromkeys([*_candidates(meta), *(h.key for h in hs)]))
        rec = orphan_record(meta, hold_id, amount, now=now, retention_days=retention_days)
        out.append(OrphanCharge(hold_id, [Settlement(k, hold_id, amount, amount, only_if_held=True) for k in keys],
                                metric_corrections(rec, now=float(meta["ts"])), [("usage", rec)]))
    return out


def _meta(text: str) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        meta = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    need = ("r", "k", "t", "tier", "ts")
    return meta if isinstance(meta, dict) and all(k in meta for k in need) else None


def orphan_record(meta: dict[str, Any], hold_id: str, amount: int, *, now: float,
                  retention_days: int) -> dict[str, Any]:
    ts = iso(float(meta["ts"]))
    cost = to_usd(amount)
    return {
        "pk": str(meta["k"]), "sk": record_sk(ts, str(meta["r"]), hold_id), "request_id": str(meta["r"]),
        "key_id": str(meta["k"]), "tenant": str(meta["t"]), "ts": ts,
        "model": meta.get("m"), "deployment": meta.get("d"), "tier": int(meta["tier"]),
        "prompt_tokens": int(meta.get("p") or 0), "completion_tokens": int(meta.get("o") or 0),
        "cost_usd": cost, "reserved_usd": cost, "latency_ms": None, "cache_hit": False, "attempts": None,
        "outcome": OUTCOME, "charged": "reservation", "capability": None, "charged_at": iso(now),
        "expires_at": int(now) + retention_days * 86400,
    }


async def charge_orphans(store: RecordStore, holds: list[HeldReservation], *, now: float,
                         retention_days: int) -> int:
    """Charge and record each orphan; returns how many reservations were charged. A failure
    leaves the hold in place for the next sweep (every step is idempotent)."""
    n = 0
    for c in charges(holds, now=now, retention_days=retention_days):
        try:
            if c.records:
                # The request's own record may exist: its settlement died between writing the
                # record and settling the counters (DynamoDB: two steps). Then the record's
                # actual cost is what the counters get, not the reservation.
                rec = c.records[0][1]
                done = await store.get("usage", rec["pk"], rec["sk"])
                if done is not None and isinstance(done.get("cost_usd"), int | float):
                    actual = to_nano(float(done["cost_usd"]))
                    c = OrphanCharge(c.hold_id, [Settlement(s.key, s.hold_id, s.held, actual, only_if_held=True)
                                                 for s in c.settlements], [], c.records)
            await store.settle(c.settlements, c.corrections, c.records)
        except Exception:
            log.exception("could not charge orphaned reservation %s; the next sweep retries", c.hold_id)
            continue
        n += 1
        rec = c.records[0][1] if c.records else {}
        log.warning("charged orphaned reservation %s (request %s): $%.6f", c.hold_id, rec.get("request_id"),
                    to_usd(c.settlements[0].actual) if c.settlements else 0.0)
    return n


__all__ = ["OUTCOME", "OrphanCharge", "charge_orphans", "charges", "hold_meta", "orphan_record"]
