"""The local model as a plugin of the local home (``tiergate serve``).

:class:`LocalModelPlugin` registers the ``llama-cpp`` adapter (the packaged catalog's
tier-0 ``local`` entry) so the gateway answers locally with no API keys and no network,
assembles the bundled model before serving, and reports the local model in ``GET /health``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from tiergate.compose import Plugin
from tiergate.config.adapters import ADAPTERS, LLAMA_CPP, WORDLLAMA
from tiergate.config.catalog import Catalog, ModelSpec
from tiergate.providers.embedder import EmbedderProvider
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
            from tiergate_edge.llama_runtime import runtime_from

            self._runtime = runtime_from(self.edge)
        return self._runtime

    def _provider(self) -> Any:
        from tiergate_edge.llama_provider import provider_from

        return provider_from(self.runtime, self.edge)

    def register_adapters(self, registry: ProviderRegistry) -> None:
        registry.register(LLAMA_CPP, self._provider, check=self.unavailable)
        register_local_embedder(registry)

    def unavailable(self, spec: ModelSpec) -> str | None:
        """Why the local runtime cannot serve ``spec`` here (package or model file missing)."""
        if importlib.util.find_spec("llama_cpp") is None:
            return f"llama-cpp-python is not installed ({ADAPTERS[LLAMA_CPP].install_hint})"
        from tiergate_edge.default_model import model_missing

        return model_missing(spec.model, self.edge.models_dir)

    def prepare(self, catalog: Catalog) -> None:
        """Verify the bundled GGUFs before serving (a sha256 on first run only), so the
        first local request does not pay for it. Loading into memory stays lazy."""
        from tiergate_edge.default_model import is_bundled, resolve_model_path

        for m in catalog.models:
            if m.adapter == LLAMA_CPP and is_bundled(m.model) and self.unavailable(m) is None:
                resolve_model_path(m.model, self.edge.models_dir)

    def semantic_cache(self, settings: Settings, catalog: Catalog) -> Any:
        """The device's embedder and vector index (None when not installed)."""
        from tiergate_edge.semantic import semantic_cache

        return semantic_cache(settings.data_dir)

    def health_info(self) -> Mapping[str, Any]:
        info = self._runtime.info() if self._runtime is not None else {"loaded": False}
        return {"local_model": info}


def register_local_embedder(registry: ProviderRegistry) -> None:
    """The ``wordllama`` adapter: the packaged local embedder (loaded on first use)."""

    def provider() -> EmbedderProvider:
        from tiergate_edge.local_embedder import WordLlamaEmbedder

        return EmbedderProvider(WordLlamaEmbedder)

    registry.register(WORDLLAMA, provider, check=local_embedder_unavailable)


def local_embedder_unavailable(spec: ModelSpec) -> str | None:
    from tiergate_edge.local_embedder import BUNDLED

    if importlib.util.find_spec("wordllama") is None:
        return f"wordllama is not installed ({ADAPTERS[WORDLLAMA].install_hint})"
    if spec.model != BUNDLED:
        return f"unknown local embedding model {spec.model!r} (the packaged one is {BUNDLED})"
    return None
