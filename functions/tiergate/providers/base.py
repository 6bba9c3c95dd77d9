"""The provider contract: a few methods every adapter implements.

Requests and responses travel as OpenAI-shaped dicts: the gateway is OpenAI-compatible
on both sides, so the native adapter forwards them untouched and the LiteLLM adapter
converts only at its edge. An adapter raises only :mod:`tiergate.errors` upstream
errors, translated by exception *type* (or HTTP status), never by message text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tiergate.config.catalog import ModelSpec


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
    #: The gateway's request id (the usage record's): adapters that can send it as
    #: ``x-request-id``, so an upstream's log and our ledger can be matched call by call.
    request_id: str | None = None


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
