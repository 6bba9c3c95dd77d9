"""The record-store contract: what budgets, rate limits, keys, the usage ledger and
idempotency need from storage, and nothing more.

Two kinds of data:

* **Counters** (tables ``budgets`` and ``ratelimits``): an integer ``used`` (settled plus
  reserved) and ``reserved``, plus *holds* (one per in-flight reservation: amount and
  expiry). :meth:`RecordStore.bump` adds to several counters *all or nothing*, each
  guarded by "``used`` before the add is at most ``max_before``" -- the caller computes
  ``max_before = limit - amount`` because DynamoDB conditions allow no arithmetic.
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
    #: Record a hold (a reservation to settle or reclaim) under this id.
    hold_id: str | None = None
    hold_expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """Replace hold ``hold_id`` (``held``) on a counter by the ``actual`` amount.

    Idempotent while the hold exists; when the hold has already been reclaimed (it
    expired), ``actual`` is added on its own so spend is never lost."""

    key: CounterKey
    hold_id: str
    held: int
    actual: int


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
    async def reclaim(self, key: CounterKey, *, now: int) -> int:
        """Release the holds on ``key`` that expired before ``now``; returns the amount."""

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
