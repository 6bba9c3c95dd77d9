"""The local embedder: WordLlama's ``l2_supercat`` static embeddings (the only module
importing ``wordllama``).

Why this model: it ships *inside* the ``wordllama`` wheel (19 MB: a 32k x 256 float
embedding table and its tokenizer), so ``pip install`` is all it takes and nothing is
fetched at run time; it needs numpy, ``tokenizers`` and ``safetensors`` only (no torch, no
llama.cpp context to swap with the chat model), loads in ~0.5 s and embeds in microseconds
per text (a table lookup and a mean) -- the semantic cache runs it on every request. Its
vectors are Matryoshka-trained, so ``dimensions`` (64/128/256) truncates them. A GGUF
embedding model through llama.cpp would need weights no registry package ships, and a
second resident llama.cpp context beside the chat model.

``WordLlama.load()`` looks for its tokenizer under ``wordllama/tokenizer/`` while the wheel
ships it under ``wordllama/tokenizers/``, then tries to download it: we load the packaged
files directly, so there is never a network call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MODEL_NAME = "wordllama-l2-supercat-256"
#: What a catalog's ``model:`` says for this embedder.
BUNDLED = "bundled:wordllama-l2-supercat"
_WEIGHTS = "weights/l2_supercat_256.safetensors"
_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


def _import() -> tuple[Any, Path]:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    import wordllama
    from wordllama.inference import WordLlamaInference

    # wordllama.inference calls logging.basicConfig(INFO) at import: undo that side effect
    # on the process's root logger (the gateway configures its own logging).
    for h in root.handlers[len(before):]:
        root.removeHandler(h)
    root.setLevel(level)
    return WordLlamaInference, Path(wordllama.__file__).parent


class WordLlamaEmbedder:
    """:class:`tiergate.providers.embedder.Embedder` over the packaged WordLlama model."""

    name = MODEL_NAME

    def __init__(self) -> None:
        from safetensors import safe_open
        from tokenizers import Tokenizer

        inference, root = _import()
        tokenizer = Tokenizer.from_file(str(root / _TOKENIZER))
        with safe_open(str(root / _WEIGHTS), framework="np") as f:
            table = f.get_tensor("embedding.weight")
        self._model = inference(table, tokenizer)
        self.dimensions = int(table.shape[1])
        # The tokenizer's padding state is shared: one caller at a time.
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], *, dimensions: int | None = None) -> list[list[float]]:
        import numpy as np  # already imported by wordllama; kept off this module's import

        with self._lock:
            vecs = self._model.embed(list(texts), norm=False)
        if dimensions is not None and dimensions < self.dimensions:
            vecs = vecs[:, :dimensions]
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = vecs / np.where(norms == 0, 1.0, norms)
        return vecs.astype(np.float32).tolist()

    def count_tokens(self, texts: Sequence[str]) -> int:
        with self._lock:
            encoded = self._model.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return sum(sum(e.attention_mask) for e in encoded) or len(texts)
