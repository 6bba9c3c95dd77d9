"""Running a request against a fallback chain of deployments.

One *attempt* is one call to one deployment. Per deployment: up to
``max_attempts_per_deployment`` attempts with exponential backoff and full jitter,
the provider's ``Retry-After`` honoured as a floor (a longer one than
``max_retry_after_s`` moves on to the next deployment instead of waiting). Each attempt
has a timeout; the whole request has a deadline. A circuit breaker per deployment
skips deployments that keep failing. Errors that retrying cannot fix
(``retryable = False``: a bad request) end the chain at once.

Streaming falls back only before the first chunk: :meth:`Executor.open_stream` returns
once a deployment has produced its first chunk; later failures belong to the caller,
and so does the circuit's verdict: a stream that breaks off after its first byte is a
failure of its deployment (the caller records success, failure or no verdict at the end).

Money: each attempt is recorded with whether it reached a provider and whether its
outcome is unknown (:mod:`tiergate.execution.billing`), live on the
:class:`CallContext`, so whoever settles knows what may have been billed even when the
walk ends in an exception. Before each attempt ``ctx.prepare`` (the gateway's) may
shape the body for that deployment -- cap the answer at what the reservation covers --
and reserve more: after an attempt with an unknown outcome, a retry must not spend
budget the first reservation already stands for. It returns ``None`` to skip a
deployment the budget cannot cover.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiergate.config.base import DIALECT_CAPABILITIES
from tiergate.config.catalog import Catalog, ModelSpec
from tiergate.dialects import native as native_dialects
from tiergate.errors import (
    BudgetExceeded,
    DeadlineExceeded,
    GatewayError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from tiergate.execution.backoff import retry_delay
from tiergate.execution.billing import attempt_verdict
from tiergate.execution.circuit import CircuitBoard
from tiergate.providers.base import Embeds, Provider, ProviderCall, SpeaksNative
from tiergate.providers.credentials import KeyResolver
from tiergate.providers.registry import ProviderRegistry
from tiergate.request import NativeBody
from tiergate.tokens import content_tokens

#: The capability a deployment needs for each native dialect (``messages_api`` -> "anthropic").
_DIALECT_CAP = {dialect: cap for cap, dialect in DIALECT_CAPABILITIES.items()}


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    deployment: str
    outcome: str            # "ok" or an error code
    latency_ms: float
    status: int | None = None
    #: The request reached a provider (false: open circuit, connect failure).
    sent: bool = True
    #: Sent, and the answer was lost: the provider may have billed it.
    unknown: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "outcome": self.outcome,
                "latency_ms": round(self.latency_ms, 2), "status": self.status}


#: (deployment, body, attempts so far) -> the body to send, or None to skip the deployment.
Prepare = Callable[[ModelSpec, dict[str, Any], list["AttemptRecord"]], Awaitable[dict[str, Any] | None]]


@dataclass(slots=True)
class CallContext:
    request_id: str
    #: time.monotonic() value after which no new attempt starts.
    deadline: float
    #: The current walk's attempts, as they happen (see the module docstring).
    attempts: list[AttemptRecord] = field(default_factory=list)
    #: True while an attempt's call is awaited (an exception now leaves its outcome unknown).
    in_flight: bool = False
    #: Called before every attempt (see the module docstring).
    prepare: Prepare | None = None
    #: The request's :attr:`~tiergate.request.GatewayRequest.client_gone`, handed to each attempt.
    client_gone: Callable[[], Awaitable[None]] | None = None


#: Attempt outcomes that stand for a deployment skipped, not tried.
SKIPPED = frozenset({"circuit_open", "budget_skip"})


def tried(attempts: Sequence[AttemptRecord]) -> int:
    """Attempts that were made (``x-tiergate-attempts``): a deployment skipped (open
    circuit, no budget for it) is none."""
    return sum(1 for a in attempts if a.outcome not in SKIPPED)


@dataclass(slots=True)
class ExecResult:
    response: dict[str, Any]
    deployment: ModelSpec
    attempts: list[AttemptRecord]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    #: The shape of ``response``: "chat" (a ``chat.completion``), "embeddings", or the native
    #: dialect the deployment answered in ("anthropic": an Anthropic ``message``;
    #: "responses": an OpenAI ``response``).
    dialect: str = "chat"


@dataclass(slots=True)
class StreamHandle:
    deployment: ModelSpec
    first: dict[str, Any] | None
    rest: AsyncIterator[dict[str, Any]]
    attempts: list[AttemptRecord]
    started: float = field(default_factory=time.perf_counter)
    #: "chat" (``chat.completion.chunk`` dicts) or a native dialect's event dicts.
    dialect: str = "chat"


def native_dialect(provider: Provider, spec: ModelSpec, native: NativeBody | None) -> str | None:
    """The dialect to speak to ``spec``: the door's own when the deployment speaks it natively
    (its capability says so) and its adapter can pass it through; else None (chat)."""
    if native is None or not spec.has(_DIALECT_CAP.get(native.dialect, "")):
        return None
    return native.dialect if isinstance(provider, SpeaksNative) else None


def _native_call(pc: ProviderCall, native: NativeBody) -> ProviderCall:
    return dataclasses.replace(pc, body=native.body, operation=native.dialect,
                               extra_headers={**pc.extra_headers, **native.headers})


def usage_of(response: dict[str, Any], prompt_estimate: int, dialect: str = "chat") -> tuple[int, int]:
    """Token usage as the provider reported it, else an estimate (never zero for text)."""
    u = response.get("usage") or {}
    if dialect in native_dialects.FINAL_EVENTS:
        p, c = native_dialects.usage_tokens(dialect, u)
    else:
        p, c = u.get("prompt_tokens"), u.get("completion_tokens")
    if isinstance(p, int) and isinstance(c, int):
        return p, c
    if dialect == "embeddings":
        return (p if isinstance(p, int) else prompt_estimate), 0
    text = 0
    if dialect in native_dialects.FINAL_EVENTS:
        text = content_tokens(native_dialects.answer_text(dialect, response))
    for ch in response.get("choices") or ():
        msg = ch.get("message") or {}
        text += content_tokens(msg.get("content"))
    return (p if isinstance(p, int) else prompt_estimate), (c if isinstance(c, int) else text)


class Executor:
    def __init__(
        self,
        catalog: Catalog,
        registry: ProviderRegistry,
        keys: KeyResolver,
        circuits: CircuitBoard,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.catalog = catalog
        self.registry = registry
        self.keys = keys
        self.circuits = circuits
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def execute(self, candidates: Sequence[ModelSpec], body: dict[str, Any], ctx: CallContext,
                      *, prompt_estimate: int = 0, operation: str = "chat",
                      native: NativeBody | None = None) -> ExecResult:
        """Non-streaming: walk the chain until one deployment answers. ``operation``
        "embeddings" calls the adapters' ``embed``; with a ``native`` body, a deployment
        that speaks its dialect gets that body instead of the chat ``body``."""
        t0 = time.perf_counter()

        async def call(spec: ModelSpec, pc: ProviderCall) -> tuple[str, dict[str, Any]]:
            provider = self.registry.get(spec.adapter)
            if operation == "embeddings":
                if not isinstance(provider, Embeds):
                    raise UpstreamUnavailable(f"{spec.deployment_id}: adapter {spec.adapter!r} cannot embed")
                return "embeddings", await provider.embed(dataclasses.replace(pc, operation="embeddings"))
            dialect = native_dialect(provider, spec, native)
            if dialect is not None:
                assert native is not None
                return dialect, await provider.native(_native_call(pc, native))  # type: ignore[attr-defined]
            return "chat", await provider.complete(pc)

        spec, (dialect, response), attempts = await self._walk(candidates, body, ctx, call)
        if not isinstance(response.get("usage"), dict):
            response["usage"] = {}  # null or garbage from the provider: estimated below
        p, c = usage_of(response, prompt_estimate, dialect)
        return ExecResult(response=response, deployment=spec, attempts=attempts, prompt_tokens=p,
                          completion_tokens=c, cost_usd=spec.cost_usd(p, c),
                          latency_ms=(time.perf_counter() - t0) * 1000, dialect=dialect)

    async def open_stream(self, candidates: Sequence[ModelSpec], body: dict[str, Any], ctx: CallContext,
                          *, native: NativeBody | None = None) -> StreamHandle:
        """Streaming: walk the chain until one deployment yields its first chunk (or, in a
        native dialect, its first event)."""

        async def call(spec: ModelSpec, pc: ProviderCall) -> tuple[str, dict[str, Any] | None, AsyncIterator]:
            provider = self.registry.get(spec.adapter)
            dialect = native_dialect(provider, spec, native)
            if dialect is not None:
                assert native is not None
                it = provider.native_stream(_native_call(pc, native)).__aiter__()  # type: ignore[attr-defined]
            else:
                it = provider.stream(pc).__aiter__()
            try:
                first = await it.__anext__()
            except StopAsyncIteration:
                first = None
            return dialect or "chat", first, it

        spec, (dialect, first, rest), attempts = await self._walk(candidates, body, ctx, call, verdict=False)
        return StreamHandle(deployment=spec, first=first, rest=rest, attempts=attempts, dialect=dialect)

    async def count_tokens(self, spec: ModelSpec, native: NativeBody) -> dict[str, Any] | None:
        """``spec``'s own count of a native body's input tokens, if its adapter can count."""
        provider = self.registry.get(spec.adapter)
        counter = getattr(provider, "count_tokens", None)
        if native_dialect(provider, spec, native) is None or counter is None:
            return None
        rel = self.catalog.reliability
        pc = ProviderCall(deployment=spec, body={}, timeout_s=spec.timeout_s or rel.attempt_timeout_s,
                          api_key=self.keys(spec), extra_headers=dict(spec.extra_headers))
        return await counter(_native_call(pc, native))

    async def _walk(self, candidates: Sequence[ModelSpec], body: dict[str, Any], ctx: CallContext,
                    call: Callable[[ModelSpec, ProviderCall], Awaitable[Any]], *, verdict: bool = True
                    ) -> tuple[ModelSpec, Any, list[AttemptRecord]]:
        rel = self.catalog.reliability
        attempts: list[AttemptRecord] = []
        ctx.attempts, ctx.in_flight = attempts, False
        last: GatewayError | None = None
        for spec in candidates:
            did = spec.deployment_id
            for n in range(1, rel.max_attempts_per_deployment + 1):
                if not self.circuits.try_acquire(did):
                    attempts.append(AttemptRecord(did, "circuit_open", 0.0, sent=False))
                    last = last or UpstreamUnavailable(f"circuit open for {did}")
                    break
                remaining = ctx.deadline - time.monotonic()
                if remaining <= 0:
                    self.circuits.release(did)
                    raise self._final(DeadlineExceeded("The request deadline passed before an answer"), attempts)
                send = body
                if ctx.prepare is not None:
                    try:
                        shaped = await ctx.prepare(spec, body, attempts)
                    except BaseException:
                        self.circuits.release(did)
                        if last is None:
                            raise
                        # No budget for another worst case: the last failure stands.
                        raise self._final(last, attempts) from None
                    if shaped is None:
                        self.circuits.release(did)
                        attempts.append(AttemptRecord(did, "budget_skip", 0.0, sent=False))
                        break
                    send = shaped
                pc = ProviderCall(deployment=spec, body=send, timeout_s=min(spec.timeout_s or rel.attempt_timeout_s, remaining),
                                  api_key=self.keys(spec), extra_headers=dict(spec.extra_headers),
                                  request_id=ctx.request_id, client_gone=ctx.client_gone)
                t = time.perf_counter()
                ctx.in_flight = True
                try:
                    result = await call(spec, pc)
                except GatewayError as e:
                    ctx.in_flight = False
                    sent, unknown = attempt_verdict(e)
                    attempts.append(AttemptRecord(did, e.code or "error", (time.perf_counter() - t) * 1000, e.status,
                                                  sent, unknown))
                    if e.counts_against_deployment:
                        self.circuits.record_failure(did)
                    else:
                        self.circuits.release(did)
                    if not e.retryable:
                        raise self._final(e, attempts) from e
                    last = e
                    retry_after = getattr(e, "retry_after", None)
                    if isinstance(e, UpstreamRateLimited) and retry_after and retry_after > rel.max_retry_after_s:
                        break  # the provider wants a long pause: try the next deployment now
                    if n == rel.max_attempts_per_deployment:
                        break
                    delay = retry_delay(n, retry_after, base=rel.backoff_base_s, cap=rel.backoff_max_s, rng=self._rng)
                    if time.monotonic() + delay >= ctx.deadline:
                        break
                    await self._sleep(delay)
                    continue
                except BaseException:
                    # Cancelled or crashed mid-call: no verdict for the circuit; ctx.in_flight
                    # stays set, so whoever settles knows the outcome is unknown.
                    self.circuits.release(did)
                    raise
                ctx.in_flight = False
                attempts.append(AttemptRecord(did, "ok", (time.perf_counter() - t) * 1000, 200))
                if verdict:
                    self.circuits.record_success(did)
                return spec, result, attempts
        if last is None and attempts and all(a.outcome == "budget_skip" for a in attempts):
            last = BudgetExceeded("The budget reservation cannot cover an answer on any deployment of this route; "
                                  "lower the prompt or choose a cheaper model")
        if last is None:
            last = UpstreamUnavailable("no deployment to try")
        raise self._final(last, attempts)

    @staticmethod
    def _final(err: GatewayError, attempts: list[AttemptRecord]) -> GatewayError:
        """The error the client sees: the last failure's class, naming every attempt."""
        tried = [a.as_dict() for a in attempts]
        if not isinstance(err, UpstreamError) or len(attempts) <= 1:
            err.details.setdefault("attempts", tried)
            return err
        names = ", ".join(f"{a.deployment}:{a.outcome}" for a in attempts)
        kw: dict[str, Any] = {"attempts": tried}
        if isinstance(err, UpstreamRateLimited):
            kw["retry_after"] = err.retry_after
        new = type(err)(f"All attempts failed ({names}); last error: {err.message}", **kw)
        new.headers.update(err.headers)
        return new
