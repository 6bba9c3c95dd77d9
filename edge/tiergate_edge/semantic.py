"""The device's semantic cache: the MiniLM embedder and the sqlite-vec index, together.

:func:`semantic_cache` returns None (and says why in :func:`unavailable`) when a part is
not installed; the gateway then serves exact hits only and ``POST /v1/route`` says that
this home has no embedding model. Nothing loads until the first semantic lookup.
"""

from __future__ import annotations

from pathlib import Path

from tiergate.cache.semantic import SemanticCache
from tiergate_edge import minilm, vector_index

FILE = "semantic-cache.sqlite3"


def unavailable() -> str | None:
    return vector_index.unavailable() or minilm.unavailable()


def semantic_cache(data_dir: Path | str, *, path: Path | str | None = None) -> SemanticCache | None:
    if unavailable() is not None:
        return None
    embedder = minilm.MiniLMEmbedder()
    where = path or Path(data_dir) / FILE
    return SemanticCache(embedder, lambda: vector_index.SqliteVecIndex(where, dimensions=embedder.dimensions))
