"""The local model as a plugin of the local home (``tiergate serve``).

:class:`LocalModelPlugin` registers the ``llama-cpp`` adapter (the packaged catalog's
tier-0 ``local`` entry) so the gateway answers locally with no API keys and no network,
assembles the bundled model before serving, and reports the local model in ``GET /health``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tiergate.compose import Plugin
from tiergate.config.adapters import ADAPTERS, LLAMA_CPP
from tiergate.config.catalog import Catalog, ModelSpec
from tiergate.providers.registry import ProviderRegistry
from tiergate.settings import Settings
from tiergate_edge.settings import EdgeSettings


class LocalModelPlugin(Plugin):
    """The local runtime shared by the registered adapter; built lazily (no model load and
    no llama_cpp import until the first local request)."""

    def __init__(self, settings: Settings, edge: EdgeSettings | None = None) -> None:
        self.settings = settings
        self.edge = edge or EdgeSettings(data_dir=settings.data_dir)
        self._runtime: Any = None

    @property
    def runtime(self) -> Any:
        if self._runtime is None:
            from tiergate_edge.llama_runtime import LlamaRuntime

            e = self.edge
            self._runtime = LlamaRuntime(models_dir=self.settings.data_dir / "models", n_ctx_cap=e.n_ctx_cap,
                                         n_threads=e.n_threads, n_batch=e.n_batch, seed=e.seed)
        return self._runtime

    def _provider(self) -> Any:
        from tiergate_edge.llama_runtime import LlamaCppProvider

        return LlamaCppProvider(self.runtime, default_max_tokens=self.edge.default_max_tokens)

    def register_adapters(self, registry: ProviderRegistry) -> None:
        registry.register(LLAMA_CPP, self._provider, check=self.unavailable)

    @staticmethod
    def unavailable(spec: ModelSpec) -> str | None:
        """Why the local runtime cannot serve ``spec`` here (package or model file missing)."""
        if importlib.util.find_spec("llama_cpp") is None:
            return f"llama-cpp-python is not installed ({ADAPTERS[LLAMA_CPP].install_hint})"
        from tiergate_edge.default_model import is_bundled

        if not is_bundled(spec.model) and not Path(spec.model).expanduser().is_file():
            return f"model file {spec.model} does not exist"
        return None

    def prepare(self, catalog: Catalog) -> None:
        """Assemble the bundled GGUF before serving (progress bar on first run), so the
        first local request does not pay for it. Loading into memory stays lazy."""
        from tiergate_edge.default_model import ensure_bundled, is_bundled

        if any(m.adapter == LLAMA_CPP and is_bundled(m.model) for m in catalog.models):
            ensure_bundled(self.settings.data_dir / "models", progress=True)

    def semantic_cache(self, settings: Settings, catalog: Catalog) -> Any:
        """The device's embedder and vector index (None when not installed)."""
        from tiergate_edge.semantic import semantic_cache

        return semantic_cache(settings.data_dir)

    def health_info(self) -> Mapping[str, Any]:
        info = self._runtime.info() if self._runtime is not None else {"loaded": False}
        return {"local_model": info}
