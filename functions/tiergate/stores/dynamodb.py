"""The cloud store: DynamoDB through boto3 (the only module importing boto3 for data).

Tables (created by CDK; :func:`create_tables` makes the same ones for dev and tests):
each has ``pk`` (S) + ``sk`` (S) and the TTL attribute ``expires_at`` (epoch seconds);
the usage table has the GSI ``by_tenant`` (``tenant`` S, ``ts`` S).

Counters are items with ``used`` (settled + reserved), ``reserved`` and one map
attribute ``h_<hold id>`` = ``{a: amount, x: expires_at}`` per in-flight reservation.

**All-or-nothing bumps without transactions.** dynalite has no TransactWriteItems (and
moto's is not atomic), so a batch of bumps is N single-item conditional UpdateItems sent
*in parallel* (one round trip of latency). Each is atomic and guarded by
``used <= :max`` (``:max = limit - amount``, computed by the caller because conditions
allow no arithmetic), so no counter ever passes its limit. If any fails, the ones that
succeeded are undone (compensation, conditional on their hold/counter still existing).
Between the add and the undo a counter is briefly over-reserved, which can only make a
concurrent request see *less* room: the error is a spurious rejection under contention,
never an overshoot. Settled spend therefore never exceeds a limit (as long as the
actual cost does not exceed the reserved estimate).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, TypeVar

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from tiergate.stores.base import (
    Bump,
    Cond,
    ConditionFailed,
    Correction,
    CounterKey,
    CounterState,
    RecordStore,
    Rejected,
    Settlement,
)

T = TypeVar("T")
_ser, _de = TypeSerializer(), TypeDeserializer()
_HOLD = "h_"


def make_client(endpoint_url: str | None = None, region: str | None = None, *, pool: int = 64) -> Any:
    cfg = Config(max_pool_connections=pool, retries={"max_attempts": 3, "mode": "standard"},
                 connect_timeout=2, read_timeout=5)
    return boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=region or "us-east-1", config=cfg)


def create_tables(client: Any, names: dict[str, str]) -> None:
    """Create the tables (logical name -> physical name) if missing; dev and tests only."""
    existing = set(client.list_tables().get("TableNames", []))
    for logical, name in names.items():
        if name in existing:
            continue
        spec: dict[str, Any] = {
            "TableName": name, "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                     {"AttributeName": "sk", "AttributeType": "S"}],
        }
        if logical == "usage":
            spec["AttributeDefinitions"] += [{"AttributeName": "tenant", "AttributeType": "S"},
                                             {"AttributeName": "ts", "AttributeType": "S"}]
            spec["GlobalSecondaryIndexes"] = [{
                "IndexName": "by_tenant", "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [{"AttributeName": "tenant", "KeyType": "HASH"},
                              {"AttributeName": "ts", "KeyType": "RANGE"}]}]
        client.create_table(**spec)
        client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
        try:
            client.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": "expires_at"})
        except ClientError:
            pass  # dynalite has no TTL API; expiry is also checked on read


def _to_ddb(v: Any) -> dict[str, Any]:
    if isinstance(v, float):
        v = Decimal(repr(v))
    elif isinstance(v, dict):
        return {"M": {k: _to_ddb(x) for k, x in v.items()}}
    elif isinstance(v, list | tuple):
        return {"L": [_to_ddb(x) for x in v]}
    return _ser.serialize(v)


def _from_ddb(av: dict[str, Any]) -> Any:
    v = _de.deserialize(av)
    return _plain(v)


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _item(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _from_ddb(v) for k, v in raw.items()}


def _live(rec: dict[str, Any], now: int) -> bool:
    x = rec.get("expires_at")
    return x is None or x >= now


def _is_cond_fail(e: ClientError) -> bool:
    return e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _key(k: CounterKey) -> dict[str, Any]:
    return {"pk": {"S": k.pk}, "sk": {"S": k.sk}}


class _Failed(Exception):
    pass


class DynamoStore(RecordStore):
    kind = "dynamodb"

    def __init__(self, client: Any, tables: dict[str, str], *, threads: int = 32) -> None:
        super().__init__()
        self._c = client
        self._t = dict(tables)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tiergate-ddb")

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @property
    def client(self) -> Any:
        """The boto3 client, for other tables of the same home (the response cache)."""
        return self._c

    async def aclose(self) -> None:
        self._pool.shutdown(wait=True)

    # --- counters ---------------------------------------------------------------------

    async def bump(self, bumps: Sequence[Bump], *, now: int) -> list[int]:
        self.round_trips += 1  # the updates go out in parallel: one round trip of latency
        results = await asyncio.gather(*(self._io(self._bump_one, b) for b in bumps), return_exceptions=True)
        failed = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
        if not failed:
            return [int(r) for r in results]  # type: ignore[arg-type]
        applied = [b for b, r in zip(bumps, results, strict=True) if not isinstance(r, BaseException)]
        if applied:
            await self.release(applied)  # compensation: see the module docstring
        i, exc = failed[0]
        if isinstance(exc, _Failed):
            state = await self._io(self._read_one, bumps[i].key)
            raise Rejected(i, state.used if state else 0)
        raise exc

    def _bump_one(self, b: Bump) -> int:
        names: dict[str, str] = {}
        values: dict[str, Any] = {":a": {"N": str(b.amount)}, ":exp": {"N": str(b.expires_at)}}
        if b.hold_id:
            expr = "ADD used :a, reserved :a SET expires_at = :exp, #h = :hold"
            names["#h"] = _HOLD + b.hold_id
            values[":hold"] = {"M": {"a": {"N": str(b.amount)},
                                     "x": {"N": str(b.hold_expires_at or b.expires_at)}}}
        else:
            expr = "ADD used :a SET expires_at = :exp"
        kw: dict[str, Any] = {}
        if b.max_before is not None:
            # The limit check: room for this amount iff used (settled + reserved) <= limit - amount.
            # A counter that does not exist yet has used = 0 (the caller rejects amount > limit).
            kw["ConditionExpression"] = "attribute_not_exists(used) OR used <= :max"
            values[":max"] = {"N": str(b.max_before)}
        else:
            # Unlimited counter (kept for reporting): the only condition is that the
            # item is what we think it is -- a counter, or nothing yet.
            kw["ConditionExpression"] = "attribute_not_exists(pk) OR attribute_exists(used)"
        if names:
            kw["ExpressionAttributeNames"] = names
        try:
            out = self._c.update_item(TableName=self._t[b.key.table], Key=_key(b.key), UpdateExpression=expr,
                                      ExpressionAttributeValues=values, ReturnValues="UPDATED_NEW", **kw)
        except ClientError as e:
            if _is_cond_fail(e):
                raise _Failed() from None
            raise
        return int(out["Attributes"]["used"]["N"])

    async def release(self, bumps: Sequence[Bump]) -> None:
        self.round_trips += 1
        await asyncio.gather(*(self._io(self._release_one, b) for b in bumps))

    def _release_one(self, b: Bump) -> None:
        values = {":neg": {"N": str(-b.amount)}}
        if b.hold_id:
            # Undo only while our hold is there: if it was reclaimed (expired) the amount
            # has been given back already and must not be subtracted twice.
            self._cond_update(b.key, "ADD used :neg, reserved :neg REMOVE #h", "attribute_exists(#h)",
                              values, {"#h": _HOLD + b.hold_id})
        else:
            # Rate-limit window: subtract only from a live counter (never recreate one).
            self._cond_update(b.key, "ADD used :neg", "attribute_exists(used)", values)

    def _cond_update(self, k: CounterKey, expr: str, cond: str, values: dict[str, Any],
                     names: dict[str, str] | None = None) -> bool:
        kw: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
        try:
            self._c.update_item(TableName=self._t[k.table], Key=_key(k), UpdateExpression=expr,
                                ConditionExpression=cond, ExpressionAttributeValues=values, **kw)
            return True
        except ClientError as e:
            if _is_cond_fail(e):
                return False
            raise

    async def settle(self, settlements: Sequence[Settlement], corrections: Sequence[Correction] = (),
                     records: Sequence[tuple[str, dict[str, Any]]] = ()) -> None:
        # The record first (write-once), then the counters: a replay after a crash finds
        # the record, and every counter step is itself idempotent while its hold exists.
        self.round_trips += 1 + bool(records)
        replay = False
        for table, rec in records:
            try:
                await self._io(self._put, table, rec, Cond(absent=True))
            except ConditionFailed:
                replay = True
        # On a replay the corrections (token and reporting counters) were applied with the
        # record; only holds -- idempotent by their own condition -- are retried.
        await asyncio.gather(*(self._io(self._settle_one, s, replay) for s in settlements),
                             *(self._io(self._correct_one, c) for c in (() if replay else corrections)))

    def _settle_one(self, s: Settlement, replay: bool) -> None:
        names = {"#h": _HOLD + s.hold_id}
        # Replace the hold by the actual cost, once: the hold's existence is the proof it
        # has been neither settled nor reclaimed.
        if self._cond_update(s.key, "ADD used :d, reserved :neg REMOVE #h", "attribute_exists(#h)",
                             {":d": {"N": str(s.actual - s.held)}, ":neg": {"N": str(-s.held)}}, names):
            return
        if s.actual and not replay:
            # (On a replay -- the record already existed -- an absent hold means this step
            # was done before, so nothing is added twice.)
            # The hold expired and was reclaimed (its amount given back): the actual
            # spend still counts, added on its own -- only while the hold is still absent.
            self._cond_update(s.key, "ADD used :a", "attribute_not_exists(#h)",
                              {":a": {"N": str(s.actual)}}, names)

    def _correct_one(self, c: Correction) -> None:
        if c.expires_at is None:
            # Correct a live window only; an expired window has nothing left to correct.
            self._cond_update(c.key, "ADD used :d", "attribute_exists(used)", {":d": {"N": str(c.delta)}})
        else:
            # A reporting counter: create it or add to it, but never turn another kind of
            # item into a counter.
            self._cond_update(c.key, "ADD used :d SET expires_at = :x",
                              "attribute_not_exists(pk) OR attribute_exists(used)",
                              {":d": {"N": str(c.delta)}, ":x": {"N": str(c.expires_at)}})

    async def read_counters(self, keys: Sequence[CounterKey]) -> dict[CounterKey, CounterState]:
        self.round_trips += 1
        states = await asyncio.gather(*(self._io(self._read_one, k) for k in keys))
        return {k: s for k, s in zip(keys, states, strict=True) if s is not None}

    def _read_one(self, k: CounterKey) -> CounterState | None:
        raw = self._c.get_item(TableName=self._t[k.table], Key=_key(k), ConsistentRead=True).get("Item")
        return _counter(raw) if raw else None

    async def reclaim(self, key: CounterKey, *, now: int) -> int:
        self.round_trips += 1
        return await self._io(self._reclaim, key, now)

    def _reclaim(self, k: CounterKey, now: int) -> int:
        for _ in range(5):
            st = self._read_one(k)
            expired = {h: a for h, (a, x) in (st.holds if st else {}).items() if x < now}
            if not expired:
                return 0
            total = sum(expired.values())
            names = {f"#h{i}": _HOLD + h for i, h in enumerate(expired)}
            # Give back exactly the holds we saw expired, and only if all of them are still
            # there (a concurrent settle or reclaim of one of them makes us re-read).
            cond = " AND ".join(f"attribute_exists({n})" for n in names)
            if self._cond_update(k, "ADD used :neg, reserved :neg REMOVE " + ", ".join(names), cond,
                                 {":neg": {"N": str(-total)}}, names):
                return total
        return 0

    async def scan_counters(self, table: str, pk_prefix: str) -> dict[CounterKey, CounterState]:
        raws = await self._io(self._scan_raw, table, "begins_with(pk, :p)", {":p": {"S": pk_prefix}}, 100_000)
        return {CounterKey(table, r["pk"]["S"], r["sk"]["S"]): _counter(r) for r in raws}

    async def delete_counters(self, keys: Sequence[CounterKey]) -> None:
        def one(k: CounterKey) -> None:
            try:
                # Delete only a counter (an item with `used`), never some other record.
                self._c.delete_item(TableName=self._t[k.table], Key=_key(k),
                                    ConditionExpression="attribute_exists(used)")
            except ClientError as e:
                if not _is_cond_fail(e):
                    raise
        await asyncio.gather(*(self._io(one, k) for k in keys))

    # --- records ----------------------------------------------------------------------

    async def put(self, table: str, record: dict[str, Any], cond: Cond | None = None) -> None:
        cond = cond or Cond()
        self.round_trips += 1
        await self._io(self._put, table, record, cond)

    def _put(self, table: str, rec: dict[str, Any], cond: Cond) -> None:
        item = {k: _to_ddb(v) for k, v in rec.items() if v is not None}
        kw = _condition(cond)
        try:
            self._c.put_item(TableName=self._t[table], Item=item, **kw)
        except ClientError as e:
            if _is_cond_fail(e):
                raise ConditionFailed(str(e)) from None
            raise

    async def get(self, table: str, pk: str, sk: str) -> dict[str, Any] | None:
        def go() -> dict[str, Any] | None:
            raw = self._c.get_item(TableName=self._t[table], Key={"pk": {"S": pk}, "sk": {"S": sk}},
                                   ConsistentRead=True).get("Item")
            rec = _item(raw) if raw else None
            # TTL deletes lazily: an expired item is treated as absent.
            return rec if rec is not None and _live(rec, int(time.time())) else None
        self.round_trips += 1
        return await self._io(go)

    async def delete(self, table: str, pk: str, sk: str, cond: Cond | None = None) -> None:
        cond = cond or Cond()
        def go() -> None:
            try:
                self._c.delete_item(TableName=self._t[table], Key={"pk": {"S": pk}, "sk": {"S": sk}},
                                    **_condition(cond))
            except ClientError as e:
                if _is_cond_fail(e):
                    raise ConditionFailed(str(e)) from None
                raise
        await self._io(go)

    async def query(self, table: str, pk: str, *, sk_from: str | None = None, sk_to: str | None = None,
                    limit: int = 1000) -> list[dict[str, Any]]:
        kce = "pk = :pk AND sk BETWEEN :a AND :b"
        vals = {":pk": {"S": pk}, ":a": {"S": sk_from or " "}, ":b": {"S": sk_to or "\U0010ffff"}}
        return await self._io(self._query, table, None, kce, vals, limit)

    async def query_tenant(self, table: str, tenant: str, *, ts_from: str | None = None,
                           ts_to: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        kce = "tenant = :t AND ts BETWEEN :a AND :b"
        vals = {":t": {"S": tenant}, ":a": {"S": ts_from or " "}, ":b": {"S": ts_to or "\U0010ffff"}}
        return await self._io(self._query, table, "by_tenant", kce, vals, limit)

    def _query(self, table: str, index: str | None, kce: str, vals: dict[str, Any], limit: int) -> list[dict]:
        kw: dict[str, Any] = {"TableName": self._t[table], "KeyConditionExpression": kce,
                              "ExpressionAttributeValues": vals}
        if index:
            kw["IndexName"] = index
        else:
            kw["ConsistentRead"] = True
        out: list[dict[str, Any]] = []
        now = int(time.time())
        while len(out) < limit:
            page = self._c.query(**kw)
            out += [r for r in map(_item, page.get("Items", [])) if _live(r, now)]
            if "LastEvaluatedKey" not in page:
                break
            kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return out[:limit]

    async def scan(self, table: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        now = int(time.time())
        raws = await self._io(self._scan_raw, table, None, None, limit)
        return [r for r in map(_item, raws) if _live(r, now)]

    def _scan_raw(self, table: str, flt: str | None, vals: dict | None, limit: int) -> list[dict]:
        kw: dict[str, Any] = {"TableName": self._t[table], "ConsistentRead": True}
        if flt:
            kw |= {"FilterExpression": flt, "ExpressionAttributeValues": vals}
        out: list[dict[str, Any]] = []
        while len(out) < limit:
            page = self._c.scan(**kw)
            out += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                break
            kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return out[:limit]


def _counter(raw: dict[str, Any]) -> CounterState:
    holds = {}
    for k, v in raw.items():
        if k.startswith(_HOLD):
            m = v["M"]
            holds[k[len(_HOLD):]] = (int(m["a"]["N"]), int(m["x"]["N"]))
    return CounterState(used=int(raw.get("used", {"N": "0"})["N"]),
                        reserved=int(raw.get("reserved", {"N": "0"})["N"]), holds=holds)


def _condition(cond: Cond) -> dict[str, Any]:
    """A :class:`Cond` as a ConditionExpression, from named pieces."""
    parts: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    if cond.absent:
        # "Key does not exist, or the record has expired": TTL deletes lazily, and an
        # expired record (stale lock, old idempotency entry) must not block a new one.
        parts.append("(attribute_not_exists(pk) OR expires_at < :now)")
        values[":now"] = {"N": str(cond.now or int(time.time()))}
    if cond.exists:
        # "The record is there": updates never resurrect a deleted record.
        parts.append("attribute_exists(pk)")
    for i, (k, v) in enumerate(cond.equals.items()):
        # "Still the version/owner we read": optimistic concurrency.
        names[f"#e{i}"] = k
        values[f":e{i}"] = _to_ddb(v)
        parts.append(f"#e{i} = :e{i}")
    if not parts:
        # Unconditional replace of a record we own by key (kept explicit and commented).
        parts.append("attribute_not_exists(pk) OR attribute_exists(pk)")
    kw: dict[str, Any] = {"ConditionExpression": " AND ".join(parts)}
    if names:
        kw["ExpressionAttributeNames"] = names
    if values:
        kw["ExpressionAttributeValues"] = values
    return kw
