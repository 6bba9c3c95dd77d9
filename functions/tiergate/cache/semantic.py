"""The semantic cache: the same question asked in other words gets the stored answer --
only when it is provably the same question.

A lookup is allowed at all only within an exact *scope* (tenant, model or tier and the
deployment group, system prompt, tools, response format, sampling parameters, every turn
but the last user message: :func:`tiergate.cache.key.semantic_scope`); inside it, only
the last user message is compared, in two ways that must both agree:

1. its embedding's cosine similarity to a cached question is at least the threshold;
2. their guard signatures are equal (:mod:`tiergate.cache.guard`: numbers, quoted text,
   code, URLs, names, negations and every content word, in order).

The embedding model and the vector index are the home's (:class:`Embedder`,
:class:`VectorIndex`; the device's are ``tiergate_edge.minilm`` and
``tiergate_edge.vector_index``). They run on one worker thread owned here, off the event
loop. :class:`Embedder` is the interface a local embeddings endpoint can share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from tiergate.cache.guard import Signature, difference, signature
from tiergate.cache.service import SemanticMatch
from tiergate.cache.store import Entry
from tiergate.config.cache import SemanticCacheConfig

T = TypeVar("T")
#: Candidates fetched per hit query (all share the probe's scope and guard).
K = 4


class Embedder(Protocol):
    """A local text embedding model: unit-length vectors, one per text, deterministic."""

    name: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class Candidate:
    similarity: float
    guard: str
    tokens: tuple[str, ...]
    question: str
    blob: bytes
    stored_at: float


class VectorIndex(Protocol):
    def add(self, *, scope: str, guard: str, vector: Any, question: str, tokens: str, blob: bytes,
            stored_at: float, expires_at: float, max_entries: int) -> None: ...

    def nearest(self, scope: str, vector: Any, *, k: int, now: float, guard: str | None = None
                ) -> list[Candidate]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SemanticProbe:
    scope: str
    question: str
    signature: Signature
    vector: Any


class SemanticCache:
    def __init__(self, embedder: Embedder, index_factory: Callable[[], VectorIndex]) -> None:
        self.embedder = embedder
        self._factory = index_factory
        self._index: VectorIndex | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiergate-semantic")

    @property
    def index(self) -> VectorIndex:
        # Built on the worker thread on first use (the index's connection lives there).
        if self._index is None:
            self._index = self._factory()
        return self._index

    async def _io(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args, **kw))

    async def probe(self, scope: str, text: str) -> SemanticProbe:
        vector = (await self._io(self.embedder.embed, [text]))[0]
        return SemanticProbe(scope, text, signature(text), vector)

    async def find(self, probe: SemanticProbe, cfg: SemanticCacheConfig, *, now: float
                   ) -> tuple[SemanticMatch | None, str]:
        def go() -> tuple[SemanticMatch | None, str]:
            same = self.index.nearest(probe.scope, probe.vector, k=K, now=now, guard=probe.signature.key)
            best = next((c for c in same if c.tokens == probe.signature.tokens), None)
            if best is not None and best.similarity >= cfg.threshold:
                return SemanticMatch(Entry.decode("", best.blob), best.similarity, best.question), "semantic hit"
            near = self.index.nearest(probe.scope, probe.vector, k=1, now=now)
            if not near:
                return None, "semantic: nothing cached in this scope"
            n = near[0]
            if n.tokens != probe.signature.tokens:
                return None, (f"semantic: the nearest cached question (similarity {n.similarity:.3f}) "
                              f"{difference(probe.signature, Signature(n.tokens))}")
            return None, f"semantic: similarity {n.similarity:.3f} is below the threshold {cfg.threshold}"

        return await self._io(go)

    async def add(self, probe: SemanticProbe, entry: Entry, blob: bytes, cfg: SemanticCacheConfig) -> bool:
        await self._io(lambda: self.index.add(
            scope=probe.scope, guard=probe.signature.key, vector=probe.vector, question=probe.question,
            tokens="\x1f".join(probe.signature.tokens), blob=blob, stored_at=entry.stored_at,
            expires_at=entry.expires_at, max_entries=cfg.max_entries))
        return True

    async def aclose(self) -> None:
        def close() -> None:
            if self._index is not None:
                self._index.close()
        await self._io(close)
        self._pool.shutdown(wait=True)
