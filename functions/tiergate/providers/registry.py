"""Adapter name -> provider: the registry, and the adapters the core ships.

Registering an adapter is one line (the edge registers ``llama-cpp`` this way). A
registration says how to build the provider (lazily: pooled clients, heavy imports are
paid on first use) and, optionally, why a deployment cannot run here at all (the
package is not installed, the model file is missing), so that deployment is reported
unusable with the reason and the fix, and never chosen, instead of failing per request.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from tiergate.config.adapters import ADAPTERS, LITELLM, OPENAI_COMPATIBLE
from tiergate.config.catalog import ModelSpec
from tiergate.errors import NoRouteAvailable
from tiergate.providers.base import Provider

ProviderFactory = Callable[[], Provider]
#: Why this deployment cannot be served by the adapter here, or None.
Check = Callable[[ModelSpec], str | None]


@dataclass(frozen=True, slots=True)
class _Registration:
    factory: ProviderFactory
    check: Check | None


class ProviderRegistry:
    """Adapter name -> one shared provider instance (pooled clients), built on first use."""

    def __init__(self) -> None:
        self._registered: dict[str, _Registration] = {}
        self._instances: dict[str, Provider] = {}

    def register(self, adapter: str, factory: ProviderFactory, *, check: Check | None = None) -> None:
        self._registered[adapter] = _Registration(factory, check)
        self._instances.pop(adapter, None)

    def has(self, adapter: str) -> bool:
        return adapter in self._registered

    def unavailable(self, spec: ModelSpec) -> str | None:
        """Why ``spec``'s adapter cannot serve it here (with the fix), or None."""
        reg = self._registered.get(spec.adapter)
        if reg is None:
            hint = ADAPTERS[spec.adapter].install_hint if spec.adapter in ADAPTERS else "unknown adapter"
            return f"adapter '{spec.adapter}' not installed ({hint})"
        return reg.check(spec) if reg.check is not None else None

    def built(self) -> frozenset[str]:
        """The adapters whose provider instance exists (built on first use or by prewarm)."""
        return frozenset(self._instances)

    def get(self, adapter: str) -> Provider:
        inst = self._instances.get(adapter)
        if inst is None:
            try:
                reg = self._registered[adapter]
            except KeyError:
                raise NoRouteAvailable(f"no provider adapter {adapter!r} is installed") from None
            inst = self._instances[adapter] = reg.factory()
        return inst

    async def aclose(self) -> None:
        for inst in self._instances.values():
            await inst.aclose()
        self._instances.clear()


def _litellm_missing() -> Check:
    # find_spec does not import litellm (seconds); the answer cannot change while we run.
    missing = importlib.util.find_spec("litellm") is None
    reason = f"litellm is not installed ({ADAPTERS[LITELLM].install_hint})"
    return lambda spec: reason if missing else None


def default_registry() -> ProviderRegistry:
    """The adapters the core ships: both built lazily, so litellm is imported only when
    a ``litellm`` deployment is actually called."""
    reg = ProviderRegistry()

    def _native() -> Provider:
        from tiergate.providers.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider()

    def _litellm() -> Provider:
        from tiergate.providers.litellm_adapter import LiteLLMProvider

        return LiteLLMProvider()

    reg.register(OPENAI_COMPATIBLE, _native)
    reg.register(LITELLM, _litellm, check=_litellm_missing())
    return reg
