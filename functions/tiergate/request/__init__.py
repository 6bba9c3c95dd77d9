"""The one internal request object: what every front door translates its body into.

A door (``/v1/chat/completions``, ``/generate``, ``/code``, and the Anthropic Messages and
Responses doors) validates its own body shape, turns it into an OpenAI chat body, and
builds a :class:`GatewayRequest` with :meth:`GatewayRequest.from_chat`. Everything below
the doors -- routing, admission, cascades, execution, settlement, idempotency, telemetry --
reads this object and never re-parses the body: the model reference is parsed once
(:class:`ModelRef`), the needs measured once (:class:`RequestNeeds`), the task classified
at most once (on first use: a named model never needs it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from tiergate.request.classify import TaskProfile, classify
from tiergate.request.model_ref import ModelRef
from tiergate.request.needs import RequestNeeds, needs_of
from tiergate.request.trace import TraceParent, trace_of

#: Client parameters the gateway consumes itself; the adapter sets its own.
NOT_UPSTREAM = ("model", "stream", "stream_options")
#: Headers that steer tiergate are the ``x-tiergate-*`` family.
HINT_PREFIX = "x-tiergate-"

__all__ = ["GatewayRequest", "ModelRef", "NativeBody", "RequestNeeds", "TaskProfile", "TraceParent", "hints_of",
           "trace_of"]


@dataclass(frozen=True, slots=True)
class NativeBody:
    """A door's own body, kept for deployments that speak the door's API natively.

    The Anthropic Messages door keeps the Messages body (and the ``anthropic-version`` /
    ``anthropic-beta`` headers) here beside the translated chat body: a deployment whose
    capabilities include the dialect's API (``messages_api``) is sent this body unchanged
    -- thinking blocks, ``cache_control`` and beta fields survive -- and every other
    deployment the chat body. Planning, admission and settlement are the same either way."""

    #: "anthropic" (Messages) or "responses" (OpenAI Responses).
    dialect: str
    #: The door's validated body without ``model`` and ``stream`` (the adapter sets those).
    body: dict[str, Any]
    #: Request headers forwarded to a native deployment, lowercased.
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayRequest:
    #: The front door that received it ("chat", "generate", "code", "messages", "responses",
    #: "completions", "embeddings").
    door: str
    ref: ModelRef
    #: The OpenAI chat body as the door produced it (``model``, ``stream`` included).
    body: dict[str, Any]
    #: What is sent upstream: ``body`` without the parameters the gateway consumes.
    upstream: dict[str, Any]
    needs: RequestNeeds
    stream: bool = False
    include_usage: bool = False
    #: The ``x-tiergate-*`` request headers, lowercased.
    hints: Mapping[str, str] = field(default_factory=dict)
    #: A task type the client asserted (``/generate``'s ``task_type``; ``/code``).
    task_hint: str | None = None
    idempotency_key: str | None = None
    keywords: Mapping[str, Sequence[str]] = field(default_factory=dict, repr=False)
    #: "chat" (every door translating to chat) or "embeddings" (``body`` is an OpenAI
    #: embeddings body; the plan only considers deployments with the ``embeddings`` capability).
    operation: str = "chat"
    #: The door's own body for deployments that speak its API natively (see :class:`NativeBody`).
    native: NativeBody | None = None
    #: The caller's W3C trace context (``traceparent`` header): the request's span is its child.
    trace: TraceParent | None = None

    @classmethod
    def from_chat(cls, body: dict[str, Any], *, aliases: Mapping[str, str], default_model: str,
                  keywords: Mapping[str, Sequence[str]] | None = None, door: str = "chat",
                  hints: Mapping[str, str] | None = None, task_hint: str | None = None,
                  idempotency_key: str | None = None, native: NativeBody | None = None,
                  trace: TraceParent | None = None) -> GatewayRequest:
        """Parse a (validated) OpenAI chat body. Raises the gateway's 4xx errors for a bad
        ``model``; everything else about the body was checked by the door."""
        ref = ModelRef.parse(body.get("model"), aliases=aliases, default=default_model)
        opts = body.get("stream_options")
        return cls(
            door=door, ref=ref, body=body,
            upstream={k: v for k, v in body.items() if k not in NOT_UPSTREAM},
            needs=needs_of(body), stream=bool(body.get("stream")),
            include_usage=bool(isinstance(opts, dict) and opts.get("include_usage")),
            hints=dict(hints or {}), task_hint=task_hint, idempotency_key=idempotency_key,
            keywords=keywords or {}, native=native, trace=trace,
        )

    @classmethod
    def from_embeddings(cls, body: dict[str, Any], *, aliases: Mapping[str, str], default_model: str,
                        prompt_tokens: int, hints: Mapping[str, str] | None = None,
                        idempotency_key: str | None = None, trace: TraceParent | None = None) -> GatewayRequest:
        """Parse a (validated) OpenAI embeddings body; ``prompt_tokens`` is the door's estimate
        of its input. It needs the ``embeddings`` capability and produces no output tokens."""
        ref = ModelRef.parse(body.get("model"), aliases=aliases, default=default_model)
        needs = RequestNeeds(prompt_tokens=prompt_tokens, max_output_tokens=0,
                             capabilities=frozenset({"embeddings"}))
        return cls(door="embeddings", ref=ref, body=body, upstream={k: v for k, v in body.items() if k != "model"},
                   needs=needs, hints=dict(hints or {}), idempotency_key=idempotency_key, operation="embeddings",
                   trace=trace)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages") or []

    @cached_property
    def task(self) -> TaskProfile:
        """The task type and difficulty (keywords, code shape, structure), classified once."""
        return classify(self.messages, self.keywords, hint=self.task_hint)

    def hint(self, name: str, default: str = "") -> str:
        return self.hints.get(name, default)


def hints_of(headers: Mapping[str, str]) -> dict[str, str]:
    """The ``x-tiergate-*`` headers of a request, lowercased names."""
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith(HINT_PREFIX)}
