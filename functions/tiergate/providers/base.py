"""The provider contract: a few methods every adapter implements.

Requests and responses travel as OpenAI-shaped dicts: the gateway is OpenAI-compatible
on both sides, so the native adapter forwards them untouched and the LiteLLM adapter
converts only at its edge. An adapter raises only :mod:`tiergate.errors` upstream
errors, translated by exception *type* (or HTTP status), never by message text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tiergate.config.catalog import ModelSpec


class WireChunk(dict):  # type: ignore[type-arg]
    """A streamed ``chat.completion.chunk`` that keeps its upstream's bytes: ``wire`` is the
    whole SSE event (``data: {...}\n\n``) as it arrived. A door that forwards the chunk
    unchanged sends ``wire`` instead of encoding the dict again (byte for byte what the
    upstream sent, and one JSON encoding less for every chunk of a stream); whoever
    changes the chunk sets ``wire`` to None."""

    __slots__ = ("wire",)


def wire_of(chunk: dict[str, Any]) -> bytes | None:
    """The upstream's own bytes of ``chunk`` when it arrived unchanged, else None."""
    return chunk.wire if type(chunk) is WireChunk else None


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
    #: What ``body`` is: "chat" (the contract above), "embeddings" (an OpenAI embeddings
    #: body without ``model``), or a native dialect ("anthropic": an Anthropic Messages body
    #: without ``model``/``stream``; "responses": an OpenAI Responses body).
    operation: str = "chat"
    #: The gateway's request id (the usage record's): adapters that can send it as
    #: ``x-request-id``, so an upstream's log and our ledger can be matched call by call.
    request_id: str | None = None
    #: Returns when the client has gone (None: no client to watch). An adapter whose work
    #: would outlive a gone client (local generation on the device) races it and stops;
    #: a network upstream needs nothing (its request is cancelled with the caller's task).
    client_gone: Callable[[], Awaitable[None]] | None = None


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


@runtime_checkable
class Embeds(Protocol):
    """Optional: an adapter that creates embeddings (``/v1/embeddings``)."""

    async def embed(self, call: ProviderCall) -> dict[str, Any]:
        """An OpenAI embeddings ``list`` with float vectors (``data[i].embedding``) and
        ``usage.prompt_tokens``; ``call.body`` has ``input`` (and ``dimensions``...)."""
        ...


@runtime_checkable
class SpeaksNative(Protocol):
    """Optional: an adapter that passes a door's own body to a deployment that speaks that
    API natively (its capabilities say which: ``messages_api``, ``responses_api``).

    ``call.operation`` names the dialect; the body goes upstream unchanged (only ``model``
    is set to the deployment's) and the answer comes back in the same dialect: an
    Anthropic ``message`` / an OpenAI ``response``, or their stream events as dicts (each
    with its ``type``). Failures are the same :mod:`tiergate.errors` classes as ``complete``."""

    async def native(self, call: ProviderCall) -> dict[str, Any]: ...

    def native_stream(self, call: ProviderCall) -> AsyncIterator[dict[str, Any]]: ...
