"""The record-store contract: what budgets, rate limits, keys, the usage ledger and
idempotency need from storage, and nothing more.

Two kinds of data:

* **Counters** (tables ``budgets`` and ``ratelimits``): an integer ``used`` (settled plus
  reserved) and ``reserved``, plus *holds* (one per in-flight reservation: amount and
  expiry). :meth:`RecordStore.bump` adds to several counters *all or nothing*, each
  guarded by "``used`` before the add is at most ``max_before``" -- the caller computes
  ``max_before = limit - amount`` because DynamoDB conditions allow no arithmetic.
  A hold carries ``meta`` (who reserved what, when), so a hold whose request died can be
  charged and written to the usage ledger by anyone who finds it
  (:meth:`RecordStore.orphaned_holds`).
* **Records** (tables ``keys``, ``usage``, ``idempotency``, ``responses``): flat dicts with ``pk``/``sk``
  (strings), optional ``expires_at`` (epoch seconds, the TTL attribute), optional
  ``tenant``/``ts`` (the usage table's ``by_tenant`` index). Writes take a :class:`Cond`.

Amounts are integers (nano-USD for budgets, requests or tokens for rate limits), so both
stores add exactly. Every method is async; implementations keep blocking I/O off the
event loop. ``round_trips`` counts store requests *on the caller's critical path*
(parallel requests issued together count once) for the benchmark.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: Logical table names; each store maps them to its physical tables.
TABLES: tuple[str, ...] = ("keys", "budgets", "ratelimits", "usage", "idempotency", "responses")
COUNTER_TABLES: tuple[str, ...] = ("budgets", "ratelimits")


@dataclass(frozen=True, slots=True)
class CounterKey:
    table: str
    pk: str
    sk: str


@dataclass(frozen=True, slots=True)
class Bump:
    """Add ``amount`` to a counter if ``used <= max_before`` (``None``: unconditional)."""

    key: CounterKey
    amount: int
    max_before: int | None
    #: The counter's TTL (the end of its period plus slack).
    expires_at: int
    #: Record a hold (a reservation to settle, or to charge when orphaned) under this id.
    hold_id: str | None = None
    hold_expires_at: int | None = None
    #: The reservation's description (JSON text, see :mod:`tiergate.limits.orphans`), kept
    #: with the hold so an orphaned hold can be charged and recorded.
    hold_meta: str | None = None
    #: Sliding window: the previous window's counter, counted at this weight (the share of
    #: it still inside the sliding window). The condition becomes "used + ceil(prev x
    #: weight) <= max_before", and the bump reports that effective count.
    prev_key: CounterKey | None = None
    prev_weight: float = 0.0

    def slid(self, prev_used: int) -> int:
        """The previous window's share for a counter whose previous window counted ``prev_used``."""
        return math.ceil(prev_used * self.prev_weight - 1e-9) if self.prev_key is not None else 0


@dataclass(frozen=True, slots=True)
class Settlement:
    """Replace hold ``hold_id`` (``held``) on a counter by the ``actual`` amount.

    Idempotent while the hold exists. When the hold is gone and the settlement is new
    (its usage record did not exist: the counter was reset by an admin) ``actual`` is
    added on its own so spend is never lost -- unless ``only_if_held``: charging an
    orphaned hold touches only counters that still have it."""

    key: CounterKey
    hold_id: str
    held: int
    actual: int
    only_if_held: bool = False


@dataclass(frozen=True, slots=True)
class Correction:
    """Add ``delta`` (may be negative) to a counter.

    Without ``expires_at`` only a live counter is corrected (a vanished rate window is
    left alone); with it the counter is created when missing (metrics)."""

    key: CounterKey
    delta: int
    expires_at: int | None = None


@dataclass(slots=True)
class CounterState:
    used: int = 0
    reserved: int = 0
    #: hold id -> (amount, expires_at)
    holds: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HeldReservation:
    """A hold found by :meth:`RecordStore.orphaned_holds`: its request's outcome is unknown."""

    key: CounterKey
    hold_id: str
    amount: int
    expires_at: int
    #: The ``hold_meta`` it was made with ("" when it has none: made before holds had it).
    meta: str


@dataclass(frozen=True, slots=True)
class Cond:
    """A write condition, built from named pieces (all given pieces must hold).

    ``absent``: no record with this pk/sk exists -- or it has expired (``expires_at``
    in the past), because DynamoDB TTL deletes lazily and an expired record must not
    block a new one. ``exists``: the record exists. ``equals``: these attributes have
    these values (optimistic concurrency / ownership tokens)."""

    absent: bool = False
    exists: bool = False
    equals: dict[str, Any] = field(default_factory=dict)
    #: "now" for the ``absent`` expiry check; filled by the store when 0.
    now: int = 0


class Rejected(Exception):
    """A :class:`Bump` failed its condition. Nothing else in the batch was applied."""

    def __init__(self, index: int, used: int) -> None:
        super().__init__(f"bump {index} rejected (used={used})")
        self.index = index
        self.used = used


class ConditionFailed(Exception):
    """A record write's :class:`Cond` did not hold."""


class RecordStore(abc.ABC):
    """Budgets/rate-limit logic lives above this; stores only store."""

    kind: str = "abstract"

    def __init__(self) -> None:
        self.round_trips = 0

    # --- counters ---------------------------------------------------------------------

    @abc.abstractmethod
    async def bump(self, bumps: Sequence[Bump], *, now: int) -> list[int]:
        """Apply all bumps or none. Returns each counter's ``used`` after the add.
        Raises :class:`Rejected` for the first failing condition (others undone)."""

    @abc.abstractmethod
    async def settle(
        self,
        settlements: Sequence[Settlement],
        corrections: Sequence[Correction] = (),
        records: Sequence[tuple[str, dict[str, Any]]] = (),
    ) -> None:
        """Settle holds, correct counters and write records (``absent`` condition: a
        replay writes nothing twice). Safe to repeat after a partial failure."""

    @abc.abstractmethod
    async def release(self, bumps: Sequence[Bump]) -> None:
        """Undo applied bumps (their holds, if any, must still exist)."""

    @abc.abstractmethod
    async def read_counters(self, keys: Sequence[CounterKey]) -> dict[CounterKey, CounterState]:
        """Current state; missing counters are omitted."""

    @abc.abstractmethod
    async def orphaned_holds(self, *, now: int, key: CounterKey | None = None,
                             limit: int = 1000) -> list[HeldReservation]:
        """Holds whose request can no longer settle them: expired before ``now``, or (a
        store that knows its writers, SQLite) made by a process that has died. Only
        budget holds; with ``key``, only that counter's. Nothing is changed: the caller
        charges them through :meth:`settle` (``only_if_held``)."""

    @abc.abstractmethod
    async def scan_counters(self, table: str, pk_prefix: str) -> dict[CounterKey, CounterState]:
        """Admin/reporting only (not the hot path)."""

    @abc.abstractmethod
    async def delete_counters(self, keys: Sequence[CounterKey]) -> None:
        """Admin reset."""

    # --- records ----------------------------------------------------------------------

    @abc.abstractmethod
    async def put(self, table: str, record: dict[str, Any], cond: Cond | None = None) -> None:
        """Create or replace; raises :class:`ConditionFailed`."""

    @abc.abstractmethod
    async def get(self, table: str, pk: str, sk: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def delete(self, table: str, pk: str, sk: str, cond: Cond | None = None) -> None: ...

    @abc.abstractmethod
    async def query(self, table: str, pk: str, *, sk_from: str | None = None,
                    sk_to: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Records with this pk, sk in [sk_from, sk_to], ascending."""

    @abc.abstractmethod
    async def query_tenant(self, table: str, tenant: str, *, ts_from: str | None = None,
                           ts_to: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Records of a tenant by ``ts`` (the ``by_tenant`` index), ascending."""

    @abc.abstractmethod
    async def scan(self, table: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        """Admin only."""

    async def aclose(self) -> None:
        return None
