"""What the gateway hands a front door: a :class:`Completed` answer, a :class:`Streaming`
one or a :class:`Deferred` job, with the :class:`ResponseMeta` rendered into the
``x-tiergate-*`` headers (every value made header-safe here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from tiergate.cache.service import Lookup
from tiergate.config.catalog import ModelSpec

SSE_DONE = b"data: [DONE]\n\n"


def header_safe(text: object, limit: int = 400) -> str:
    """HTTP header values must be latin-1 without control characters; keep them ASCII,
    printable and bounded, whatever the text came from (every ``x-tiergate-*`` value goes
    through here, so no value can make the server drop a response it already paid for)."""
    text = text if isinstance(text, str) else str(text)
    if text.isascii() and text.isprintable():
        return text[:limit]
    safe = text.encode("ascii", "replace").decode()
    return "".join(c if " " <= c <= "~" else "?" for c in safe)[:limit]


def safe_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: header_safe(v, 1000) for k, v in headers.items()}


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


@dataclass(slots=True)
class ResponseMeta:
    """What answered and why: rendered once into the ``x-tiergate-*`` headers."""

    request_id: str
    deployment: ModelSpec
    attempts: int
    reason: str
    cost_usd: float | None = None
    budget_headers: dict[str, str] = field(default_factory=dict)
    cascade: str | None = None
    replay: bool = False
    #: The cache step's outcome (x-tiergate-cache, -age, -similarity, -reason).
    cache: Lookup | None = None

    def headers(self) -> dict[str, str]:
        d = self.deployment
        h = {"x-request-id": header_safe(self.request_id), "x-tiergate-model": header_safe(d.name),
             "x-tiergate-deployment": header_safe(d.deployment_id), "x-tiergate-tier": str(d.tier),
             "x-tiergate-attempts": str(self.attempts), "x-tiergate-route-reason": header_safe(self.reason)}
        if self.cost_usd is not None:
            h["x-tiergate-cost-usd"] = f"{self.cost_usd:.10f}"
        if self.cascade is not None:
            h["x-tiergate-cascade"] = header_safe(self.cascade, 1000)
        h.update({k: header_safe(v) for k, v in self.budget_headers.items()})
        if self.replay:
            h["x-tiergate-idempotent-replay"] = "true"
        if self.cache is not None:
            h.update({k: header_safe(v) for k, v in self.cache.headers().items()})
        return h


def dialect_of(response: dict[str, Any]) -> str:
    """The shape of an answer (a replayed one carries no tag): "anthropic" for an Anthropic
    ``message`` and "responses" for an OpenAI ``response`` (a native deployment answered),
    "embeddings", else "chat"."""
    if response.get("type") == "message":
        return "anthropic"
    return {"response": "responses", "list": "embeddings"}.get(response.get("object"), "chat")


@dataclass(slots=True)
class Completed:
    """A settled, non-streamed answer: an OpenAI ``chat.completion`` dict with ``usage`` --
    or, per ``dialect``, an embeddings list or a native deployment's own answer (an
    Anthropic ``message``), which the door renders as is."""

    response: dict[str, Any]
    meta: ResponseMeta
    status: int = 200
    #: A replayed idempotent response keeps the headers it was first sent with.
    stored_headers: dict[str, str] | None = None
    dialect: str = "chat"

    @property
    def headers(self) -> dict[str, str]:
        if self.stored_headers is not None:
            # An idempotent replay is not a cache hit: the first response's cache headers go.
            kept = {k: v for k, v in self.stored_headers.items() if not k.startswith("x-tiergate-cache")}
            return {**safe_headers(kept), "x-tiergate-idempotent-replay": "true"}
        return self.meta.headers()

    @property
    def deployment(self) -> ModelSpec:
        return self.meta.deployment

    @property
    def cost_usd(self) -> float:
        return self.meta.cost_usd or 0.0


@dataclass(slots=True)
class Streaming:
    """A stream ready to send: ``chunks`` yields ``chat.completion.chunk`` dicts (or, when
    ``dialect`` is native, that dialect's event dicts) and settles the request itself
    before it ends (or when closed early). A door that gives up on the stream without
    iterating it must still ``await streaming.aclose()``."""

    meta: ResponseMeta
    chunks: AsyncIterator[dict[str, Any]]
    include_usage: bool
    dialect: str = "chat"
    #: What settles the request (closed after ``chunks``, which may wrap it unstarted).
    run: Any = None

    @property
    def headers(self) -> dict[str, str]:
        return self.meta.headers()

    async def aclose(self) -> None:
        for it in (self.chunks, self.run):
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()


@dataclass(frozen=True, slots=True)
class Deferred:
    """The edge queued the request (the cloud is needed and unreachable)."""

    job_id: str


def usage_block(prompt: int, completion: int, cost_usd: float) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "cost_usd": round(cost_usd, 10)}
