"""Virtual keys: created, listed, updated and revoked by an admin; looked up by hash.

A secret is ``sk-tg-<random>``, shown once at creation. We store its sha256 only: the
record's ``sk`` is the full hex digest and its ``pk`` -- the key id, ``key_<16 hex>`` --
is a prefix of the digest, so authentication is one GetItem by hash and the admin API
finds a key by id with one Query. Records carry a ``version`` for optimistic updates.

:class:`KeyCache` keeps looked-up records for ``ttl_s`` seconds (negative results too),
so a revocation takes effect everywhere within that window (``TIERGATE_KEY_CACHE_TTL_S``,
5 s by default; the process that revokes forgets at once).

A key may carry *scopes* beyond chat: ``usage:ingest`` lets it post usage records
(``POST /v1/usage/ingest``: the edge agent's cloud key). Stored data never breaks a
read: a record that no longer validates is skipped by listings (and logged), its
``metadata`` dropped where the key itself is still sound.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tiergate.errors import Conflict, InvalidRequest, NotFound
from tiergate.limits.admission import Principal
from tiergate.limits.json_limits import depth_of
from tiergate.stores.base import Cond, ConditionFailed, RecordStore

log = logging.getLogger(__name__)

TABLE = "keys"
SECRET_PREFIX = "sk-tg-"
API_SCOPE = "api"
DASHBOARD_SCOPE = "dashboard"
#: Post usage records to ``/v1/usage/ingest`` (the edge agent's cloud key).
USAGE_INGEST = "usage:ingest"
Scope = Literal["api", "dashboard", "usage:ingest"]
#: Key ``metadata``: nesting and size caps (it is stored on the key's record and rendered
#: by every listing; DynamoDB allows 32 levels, a listing must never fail on it).
METADATA_MAX_DEPTH = 8
METADATA_MAX_BYTES = 8192


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_for(digest: str) -> str:
    return "key_" + digest[:16]


class KeyLimits(BaseModel):
    """The mutable part of a key (what create and PATCH accept)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, max_length=200)
    allowed_tiers: list[int] | None = None
    allowed_models: list[str] | None = None
    max_cost_per_request_usd: float | None = Field(None, gt=0)
    daily_budget_usd: float | None = Field(None, gt=0)
    monthly_budget_usd: float | None = Field(None, gt=0)
    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)
    #: Epoch seconds after which the key stops working.
    valid_until: float | None = None
    #: Response cache for this key: off, exact, semantic (exact and semantic), or unset (the catalog's).
    cache: Literal["off", "exact", "semantic"] | None = None
    #: What the key may do: ``api`` (call models, read its own usage and budget) and/or
    #: ``dashboard`` (sign in to ``/dashboard`` and read its tenant's usage and budgets,
    #: read-only). A key with only ``dashboard`` cannot call models.
    scopes: list[Scope] = Field(default_factory=lambda: [API_SCOPE], min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, Any]) -> dict[str, Any]:
        if depth_of(v) > METADATA_MAX_DEPTH:
            raise ValueError(f"metadata nests deeper than {METADATA_MAX_DEPTH} levels")
        try:
            size = len(orjson.dumps(v))
        except TypeError as e:
            raise ValueError(f"metadata is not JSON: {e}") from None
        if size > METADATA_MAX_BYTES:
            raise ValueError(f"metadata is {size} bytes of JSON, more than {METADATA_MAX_BYTES}")
        return v

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        return sorted(set(v))

    @field_validator("allowed_tiers")
    @classmethod
    def _tiers(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(t < 0 or t > 4 for t in v):
            raise ValueError("tiers are 0..4")
        return sorted(set(v)) if v is not None else None


class KeyCreate(KeyLimits):
    tenant: str = Field("default", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")


class VirtualKey(KeyCreate):
    """A stored key (never the secret)."""

    key_id: str
    created_at: float
    updated_at: float
    revoked: bool = False
    version: int = 1

    def usable(self, now: float) -> str | None:
        """Why the key cannot be used now, or None."""
        if self.revoked:
            return "API key has been revoked"
        if self.valid_until is not None and now >= self.valid_until:
            return "API key has expired"
        return None

    @property
    def has_budget(self) -> bool:
        """Any money limit of its own (per request, day or month)."""
        return any(v is not None for v in (self.max_cost_per_request_usd, self.daily_budget_usd,
                                           self.monthly_budget_usd))

    @property
    def tiers(self) -> frozenset[int] | None:
        return frozenset(self.allowed_tiers) if self.allowed_tiers is not None else None


def has_scope(principal: Principal, scope: str) -> bool:
    """The master has every scope; a virtual key the ones it lists (records written before
    scopes existed have ``api`` only)."""
    if principal.is_master:
        return True
    key = principal.metadata.get("key")
    return isinstance(key, VirtualKey) and scope in key.scopes


def _to_record(k: VirtualKey, digest: str) -> dict[str, Any]:
    return {"pk": k.key_id, "sk": digest, **k.model_dump()}


def _from_record(rec: dict[str, Any]) -> VirtualKey:
    """The stored key; a record whose ``metadata`` no longer validates (written before the
    caps) keeps working without it. Raises ``ValidationError`` for an unusable record."""
    body = {k: v for k, v in rec.items() if k not in ("pk", "sk", "expires_at")}
    try:
        return VirtualKey.model_validate(body)
    except ValidationError as e:
        if "metadata" in body and any(err["loc"][:1] == ("metadata",) for err in e.errors()):
            log.warning("key %s: stored metadata is invalid and is ignored", body.get("key_id"))
            return VirtualKey.model_validate({**body, "metadata": {"_invalid": "stored metadata was dropped"}})
        raise


def _listable(rec: dict[str, Any]) -> VirtualKey | None:
    try:
        return _from_record(rec)
    except (ValidationError, ValueError, TypeError):
        log.warning("skipping an unreadable key record %r", str(rec.get("pk"))[:40])
        return None


class KeyService:
    """Admin operations and the authentication lookup, over a :class:`RecordStore`."""

    def __init__(self, store: RecordStore, *, cache_ttl_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        # The cache reads the same clock, so a test (or a caller) controls its window too.
        self.cache = KeyCache(cache_ttl_s, clock=clock)

    async def create(self, spec: KeyCreate) -> tuple[VirtualKey, str]:
        """Returns the record and the secret (shown once; only its hash is kept)."""
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        digest = hash_secret(secret)
        now = self._clock()
        key = VirtualKey(**spec.model_dump(), key_id=key_id_for(digest), created_at=now, updated_at=now)
        # Condition "absent": a (vanishingly unlikely) id collision must not overwrite a key.
        await self._store.put(TABLE, _to_record(key, digest), Cond(absent=True))
        return key, secret

    async def _find(self, key_id: str) -> tuple[VirtualKey, str]:
        if not key_id.startswith("key_") or len(key_id) != 20:
            raise NotFound(f"No key {key_id!r}", param="key_id")
        recs = await self._store.query(TABLE, key_id, limit=2)
        if not recs:
            raise NotFound(f"No key {key_id!r}", param="key_id")
        return _from_record(recs[0]), recs[0]["sk"]

    async def get(self, key_id: str) -> VirtualKey:
        return (await self._find(key_id))[0]

    async def list(self, *, tenant: str | None = None, limit: int = 1000) -> list[VirtualKey]:
        keys = [k for k in map(_listable, await self._store.scan(TABLE, limit=limit)) if k is not None]
        return sorted((k for k in keys if tenant is None or k.tenant == tenant), key=lambda k: k.created_at)

    async def update(self, key_id: str, patch: dict[str, Any], *, revoke: bool = False) -> VirtualKey:
        """Apply a partial update (fields of :class:`KeyLimits`). Retries on a concurrent update."""
        bad = set(patch) - set(KeyLimits.model_fields)
        if bad:
            raise InvalidRequest(f"Unknown or read-only key fields: {sorted(bad)}", param=sorted(bad)[0])
        for _ in range(5):
            key, digest = await self._find(key_id)
            merged = {**key.model_dump(), **patch, "updated_at": self._clock(), "version": key.version + 1}
            if revoke:
                merged["revoked"] = True
            try:
                new = VirtualKey.model_validate(merged)
            except ValueError as e:
                raise InvalidRequest(f"Invalid key update: {e}") from None
            try:
                # Condition "same version": no lost update between our read and write.
                await self._store.put(TABLE, _to_record(new, digest), Cond(equals={"version": key.version}))
            except ConditionFailed:
                continue
            self.cache.forget(digest)
            return new
        raise Conflict(f"Key {key_id} is being updated concurrently; retry")

    async def revoke(self, key_id: str) -> VirtualKey:
        return await self.update(key_id, {}, revoke=True)

    async def lookup(self, secret: str) -> VirtualKey | None:
        """The key for a secret (cached, including misses), or None."""
        digest = hash_secret(secret)
        hit = self.cache.get(digest)
        if hit is not KeyCache.MISS:
            return hit
        rec = await self._store.get(TABLE, key_id_for(digest), digest)
        key = _from_record(rec) if rec else None
        self.cache.put(digest, key)
        return key


class KeyCache:
    """digest -> (deadline, key or None); bounded, per instance (no module state)."""

    MISS: Any = object()

    def __init__(self, ttl_s: float, *, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._d: dict[str, tuple[float, VirtualKey | None]] = {}

    def get(self, digest: str) -> Any:
        hit = self._d.get(digest)
        if hit is None or hit[0] < self._clock():
            return self.MISS
        return hit[1]

    def put(self, digest: str, key: VirtualKey | None) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._d) >= self._max:
            now = self._clock()
            self._d = {d: v for d, v in self._d.items() if v[0] >= now}
            if len(self._d) >= self._max:
                self._d.clear()
        self._d[digest] = (self._clock() + self.ttl_s, key)

    def forget(self, digest: str) -> None:
        self._d.pop(digest, None)
