"""The provider contract: a few methods every adapter implements.

Requests and responses travel as OpenAI-shaped dicts: the gateway is OpenAI-compatible
on both sides, so the native adapter forwards them untouched and the LiteLLM adapter
converts only at its edge. An adapter raises only :mod:`tiergate.errors` upstream
errors, translated by exception *type* (or HTTP status), never by message text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tiergate.catalog import ModelSpec


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """One attempt against one deployment."""

    deployment: ModelSpec
    #: OpenAI chat-completions parameters (messages, tools, temperature, ...) without
    #: ``model``, ``stream`` and ``stream_options``: the adapter sets those.
    body: dict[str, Any]
    timeout_s: float
    api_key: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    async def complete(self, call: ProviderCall) -> dict[str, Any]:
        """A ``chat.completion`` dict, ``usage`` included when the upstream reports it."""
        ...

    def stream(self, call: ProviderCall) -> AsyncIterator[dict[str, Any]]:
        """``chat.completion.chunk`` dicts as they arrive; the last one carries ``usage``
        when the upstream reports it. Raises before the first chunk when the attempt
        fails at connect/status time (so the executor can fall back), and
        :class:`~tiergate.errors.StreamInterrupted`-compatible upstream errors after."""
        ...

    async def aclose(self) -> None: ...


ProviderFactory = Callable[[], Provider]


class ProviderRegistry:
    """Adapter name -> one shared provider instance (pooled clients), built on first use.

    Registering an adapter is one line; the edge registers ``llama-cpp`` this way.
    """

    def __init__(self) -> None:
        self._factories: dict[str, ProviderFactory] = {}
        self._instances: dict[str, Provider] = {}

    def register(self, adapter: str, factory: ProviderFactory) -> None:
        self._factories[adapter] = factory
        self._instances.pop(adapter, None)

    def has(self, adapter: str) -> bool:
        return adapter in self._factories

    def built(self) -> frozenset[str]:
        """The adapters whose provider instance exists (built on first use or by prewarm)."""
        return frozenset(self._instances)

    def get(self, adapter: str) -> Provider:
        inst = self._instances.get(adapter)
        if inst is None:
            try:
                factory = self._factories[adapter]
            except KeyError:
                from tiergate.errors import NoRouteAvailable

                raise NoRouteAvailable(f"no provider adapter {adapter!r} is installed") from None
            inst = self._instances[adapter] = factory()
        return inst

    async def aclose(self) -> None:
        for inst in self._instances.values():
            await inst.aclose()
        self._instances.clear()


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

    reg.register("openai-compatible", _native)
    reg.register("litellm", _litellm)
    return reg
