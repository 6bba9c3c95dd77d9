"""The local-embedder seam: an :class:`Embedder` turns texts into vectors in-process, and
:class:`EmbedderProvider` serves one as a provider adapter (``/v1/embeddings`` on the local
and edge homes). The semantic cache reuses the same :class:`Embedder`.

The implementation lives with the device code (``tiergate_edge.local_embedder``: a static
embedding model shipped inside a registry package, so it installs and runs offline).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from tiergate.errors import UpstreamBadRequest
from tiergate.providers.base import ProviderCall


class Embedder(Protocol):
    """Texts -> unit-length float vectors; thread-safe, CPU-only, blocking (call it off the loop)."""

    #: The model's full vector length (``dimensions`` may ask for a prefix of it).
    dimensions: int
    name: str

    def embed(self, texts: Sequence[str], *, dimensions: int | None = None) -> list[list[float]]:
        """One vector per text; ``dimensions`` truncates (Matryoshka) and re-normalizes."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> int:
        """The model's own token count of ``texts`` (usage and billing)."""
        ...


class EmbedderProvider:
    """The provider contract over an :class:`Embedder` built lazily (the model loads on the
    first request, in a worker thread). It embeds and does nothing else."""

    def __init__(self, factory: Callable[[], Embedder]) -> None:
        self._factory = factory
        self._embedder: Embedder | None = None

    def _get(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self._factory()
        return self._embedder

    async def embed(self, call: ProviderCall) -> dict[str, Any]:
        body = call.body
        items = body.get("input")
        texts = [items] if isinstance(items, str) else list(items or ())
        if not all(isinstance(t, str) for t in texts):
            raise UpstreamBadRequest(f"{call.deployment.deployment_id}: the local embedder takes text, not token "
                                     "arrays", param="input")
        dims = body.get("dimensions")
        emb = await asyncio.to_thread(self._get)
        if dims is not None and dims > emb.dimensions:
            raise UpstreamBadRequest(f"{call.deployment.deployment_id}: dimensions must be at most {emb.dimensions}",
                                     param="dimensions")
        vectors, tokens = await asyncio.to_thread(lambda: (emb.embed(texts, dimensions=dims), emb.count_tokens(texts)))
        return {"object": "list", "model": call.deployment.name,
                "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    async def complete(self, call: ProviderCall) -> dict[str, Any]:
        raise UpstreamBadRequest(f"{call.deployment.deployment_id} is an embedding model")

    async def stream(self, call: ProviderCall) -> AsyncIterator[dict[str, Any]]:
        raise UpstreamBadRequest(f"{call.deployment.deployment_id} is an embedding model")
        yield {}  # pragma: no cover - makes this an async generator

    async def aclose(self) -> None:
        return None
