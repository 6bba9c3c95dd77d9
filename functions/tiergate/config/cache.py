"""The catalog's ``cache`` section: when answers are reused, for how long, how big.

Absent sections mean "off": a catalog without ``cache:`` caches nothing unless a virtual
key opts in (its ``cache`` setting), in which case these defaults apply. Example::

    cache:
      exact: {ttl_s: 3600, max_entry_bytes: 262144}
      semantic: {threshold: 0.9, ttl_s: 3600, max_entries: 10000}

Only deterministic requests (``temperature: 0`` or a ``seed``) are cached unless
``deterministic_only: false``: a sampled answer is one of many, and replaying it would
turn a random draw into a fixed one the client did not ask for.
"""

from __future__ import annotations

from pydantic import Field

from tiergate.config.base import Strict

#: DynamoDB's item limit is 400 KB; the cloud store skips larger entries whatever this says.
MAX_ENTRY_BYTES = 10 * 1024 * 1024


class ExactCacheConfig(Strict):
    #: How long an answer is replayed (DynamoDB TTL attribute / SQLite expiry).
    ttl_s: int = Field(3600, ge=1, le=30 * 86400)
    #: Answers larger than this (the JSON body) are not stored.
    max_entry_bytes: int = Field(256 * 1024, ge=256, le=MAX_ENTRY_BYTES)
    #: Only cache requests with temperature 0 or a seed.
    deterministic_only: bool = True
    #: The SQLite cache file's size bound (sum of stored bodies); the oldest entries go first.
    max_total_bytes: int = Field(256 * 1024 * 1024, ge=64 * 1024)


class SemanticCacheConfig(Strict):
    #: Cosine similarity of the last user message at or above which a candidate may answer
    #: (the lexical guard must also pass; see tiergate.cache.guard).
    threshold: float = Field(0.9, gt=0, le=1)
    ttl_s: int = Field(3600, ge=1, le=30 * 86400)
    #: Entries kept per home; the oldest are evicted.
    max_entries: int = Field(10_000, ge=1, le=10_000_000)
    deterministic_only: bool = True
    #: Requests with tools, images or a JSON schema are never answered semantically unless
    #: opted in here (a near question with other tools or another schema wants another answer).
    allow_tools: bool = False
    allow_images: bool = False
    allow_json_schema: bool = False


class CacheConfig(Strict):
    exact: ExactCacheConfig | None = None
    semantic: SemanticCacheConfig | None = None

    @property
    def configured(self) -> bool:
        return self.exact is not None or self.semantic is not None
