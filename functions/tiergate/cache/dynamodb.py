"""The exact cache on DynamoDB (the cloud home): one table, created by the CDK data stack.

Items: ``pk`` (S, the entry's key: a sha256 that already includes the tenant),
``tenant`` (S), ``body`` (B, the encoded :class:`~tiergate.cache.store.Entry`),
``stored_at`` (N) and ``expires_at`` (N, epoch seconds: the table's TTL attribute). TTL
deletes lazily, so reads check ``expires_at`` too.

Entries over the item limit are **skipped**, not moved to S3: DynamoDB items are at most
400 KB, and an answer that large is rare, slow to fetch from S3 anyway, and cheap to
re-ask compared to the bucket, lifecycle and IAM a second store would add. The limit
(:data:`MAX_ITEM_BYTES`, leaving room for the other attributes) is what
:attr:`DynamoExactStore.max_entry_bytes` reports, and the gateway answers uncached with
``x-tiergate-cache-reason`` saying why.

The boto3 client is passed in (built by :func:`tiergate.stores.dynamodb.make_client`,
the one module importing boto3 for data); its own exception classes are used, so this
module imports neither boto3 nor botocore.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, TypeVar

from tiergate.cache.store import Entry

T = TypeVar("T")
#: 400 KB item limit less room for the key and the other attributes.
MAX_ITEM_BYTES = 400 * 1024 - 1024


def _n(x: float) -> str:
    return str(Decimal(repr(x)))


def create_table(client: Any, name: str) -> None:
    """Create the cache table if missing (dev and tests; in the cloud CDK owns it)."""
    if name in client.list_tables().get("TableNames", []):
        return
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    try:
        client.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": "expires_at"})
    except Exception:  # dynalite has no TTL API; reads check expires_at anyway
        pass


class DynamoExactStore:
    kind = "dynamodb"
    max_entry_bytes: int | None = MAX_ITEM_BYTES

    def __init__(self, client: Any, table: str, *, threads: int = 16) -> None:
        self._c = client
        self._table = table
        self._cond_failed = client.exceptions.ConditionalCheckFailedException
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tiergate-cache-ddb")

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def get(self, key: str, *, now: float) -> Entry | None:
        return await self._io(self._get, key, now)

    def _get(self, key: str, now: float) -> Entry | None:
        # Eventually consistent: a just-stored answer may miss once more, which costs only
        # an upstream call, and halves the read price.
        item = self._c.get_item(TableName=self._table, Key={"pk": {"S": key}}).get("Item")
        if item is None:
            return None
        e = Entry.decode(key, item["body"]["B"])
        return e if e.expires_at > now else None

    async def put(self, entry: Entry, blob: bytes, *, replace: bool = False) -> bool:
        return await self._io(self._put, entry, blob, replace)

    def _put(self, e: Entry, blob: bytes, replace: bool) -> bool:
        item = {"pk": {"S": e.key}, "tenant": {"S": e.tenant}, "body": {"B": blob},
                "stored_at": {"N": _n(e.stored_at)}, "expires_at": {"N": str(math.ceil(e.expires_at))}}
        if replace:
            # Refresh: replace an entry stored before ours, never a newer one (two refreshes
            # racing leave the later answer).
            cond = "attribute_not_exists(pk) OR stored_at < :now"
        else:
            # Written once: "absent, or expired" (TTL deletes lazily and an expired entry
            # must not block a new one). Concurrent stores of one key: the first wins, the
            # others fail this condition, which is not an error (the answer is cached).
            cond = "attribute_not_exists(pk) OR expires_at <= :now"
        try:
            self._c.put_item(TableName=self._table, Item=item, ConditionExpression=cond,
                             ExpressionAttributeValues={":now": {"N": _n(e.stored_at)}})
        except self._cond_failed:
            return False
        return True

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False)
