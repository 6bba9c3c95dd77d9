"""The request path shared by every chat-shaped endpoint (``/v1/chat/completions``,
``/generate``, ``/code``): plan -> admit -> execute -> settle.

Routes stay thin: they parse, call :class:`Gateway`, and render. Settlement is returned
as a coroutine for the route to run after the response is sent (off the critical path);
the admission implementation makes it durable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tiergate.admission import AdmissionRequest, Outcome, Principal, Ticket, new_request_id
from tiergate.api.services import Services
from tiergate.catalog import ModelSpec
from tiergate.errors import GatewayError, NoRouteAvailable
from tiergate.execution.executor import AttemptRecord, CallContext
from tiergate.routing.plan import RoutePlan
from tiergate.tokens import content_tokens

#: Output tokens assumed for the worst-case budget estimate when neither the request
#: nor the catalog bounds the answer.
FALLBACK_MAX_OUTPUT = 4096
_NOT_UPSTREAM = ("model", "stream", "stream_options")

Settle = Callable[[], Awaitable[None]]


def header_safe(text: str, limit: int = 400) -> str:
    """HTTP header values must be latin-1; keep reasons ASCII and bounded."""
    return text.encode("ascii", "replace").decode()[:limit]


@dataclass(slots=True)
class Completed:
    response: dict[str, Any]
    headers: dict[str, str]
    settle: Settle
    deployment: ModelSpec
    cost_usd: float


@dataclass(slots=True)
class Streaming:
    """A stream ready to send. ``chunks`` settles the request itself, before ``[DONE]``
    (or on disconnect), so the caller has nothing left to do afterwards."""

    headers: dict[str, str]
    chunks: AsyncIterator[bytes]
    deployment: ModelSpec


@dataclass(slots=True)
class _Admitted:
    plan: RoutePlan
    ticket: Ticket
    upstream_body: dict[str, Any]
    ctx: CallContext
    notes: list[str] = field(default_factory=list)


def _streamed_tokens(state: dict[str, Any]) -> int:
    return content_tokens("".join(state["text"]))


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


class Gateway:
    def __init__(self, services: Services) -> None:
        self.s = services

    # --- planning and admission ---------------------------------------------------

    def plan(self, body: dict[str, Any], principal: Principal, hints: dict[str, str],
             task_hint: str | None = None, max_tier: int | None = None) -> RoutePlan:
        return self.s.router.plan(body, principal, hints=hints, task_hint=task_hint, max_tier=max_tier)

    def estimate(self, spec: ModelSpec, plan: RoutePlan) -> tuple[int, int, float]:
        needs = plan.needs
        assert needs is not None
        max_out = needs.max_output_tokens or spec.max_output_tokens or FALLBACK_MAX_OUTPUT
        return needs.prompt_tokens, max_out, spec.cost_usd(needs.prompt_tokens, max_out)

    async def admit(self, plan: RoutePlan, body: dict[str, Any], principal: Principal, hints: dict[str, str],
                    task_hint: str | None = None) -> _Admitted:
        request_id = new_request_id()
        spec = plan.candidates[0]
        p, max_out, est = self.estimate(spec, plan)
        ticket = await self.s.admission.admit(
            principal, AdmissionRequest(request_id=request_id, deployment=spec, prompt_tokens=p,
                                        max_output_tokens=max_out, estimate_usd=est))
        notes: list[str] = []
        if ticket.max_tier is not None and plan.tier is not None and plan.tier > ticket.max_tier:
            # Soft budget limit: the reservation (sized for the dearer model) stands and is
            # released at settlement; the request itself goes to a cheaper tier.
            try:
                plan = self.plan(body, principal, hints, task_hint, max_tier=ticket.max_tier)
                notes.append(f"budget soft limit: downgraded to tier {plan.tier}")
            except GatewayError:
                notes.append("budget soft limit: no cheaper tier available")
        upstream = {k: v for k, v in body.items() if k not in _NOT_UPSTREAM}
        deadline = time.monotonic() + self.s.catalog.reliability.deadline_s
        return _Admitted(plan, ticket, upstream, CallContext(request_id=request_id, deadline=deadline), notes)

    def _headers(self, a: _Admitted, spec: ModelSpec, attempts: list[AttemptRecord]) -> dict[str, str]:
        reason = "; ".join([a.plan.reason, *a.notes])
        h = {
            "x-request-id": a.ctx.request_id,
            "x-tiergate-model": spec.name,
            "x-tiergate-deployment": spec.deployment_id,
            "x-tiergate-tier": str(spec.tier),
            "x-tiergate-attempts": str(len(attempts)),
            "x-tiergate-route-reason": header_safe(reason),
        }
        h.update(a.ticket.headers)
        return h

    def _settler(self, a: _Admitted, outcome: Outcome) -> Settle:
        async def settle() -> None:
            await self.s.admission.settle(a.ticket, outcome)
            if self.s.telemetry is not None:
                self.s.telemetry.emit({
                    "request_id": a.ctx.request_id, "model": outcome.deployment.name if outcome.deployment else None,
                    "tier": outcome.deployment.tier if outcome.deployment else None,
                    "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
                    "cost_usd": outcome.cost_usd, "latency_ms": outcome.latency_ms, "attempts": outcome.attempts,
                    "outcome": outcome.outcome, "cache_hit": outcome.cache_hit,
                    "budget_utilization_percent": a.ticket.budget_utilization_percent,
                })
        return settle

    async def _fail(self, a: _Admitted, started: float, err: GatewayError) -> None:
        """Release the reservation of a request that produced nothing billable."""
        attempts = err.details.get("attempts") or []
        await self._settler(a, Outcome(
            deployment=None, prompt_tokens=0, completion_tokens=0, cost_usd=0.0,
            latency_ms=(time.perf_counter() - started) * 1000, attempts=len(attempts),
            outcome=f"error:{err.code}", capability=a.plan.task.task_type if a.plan.task else None))()

    # --- non-streaming ------------------------------------------------------------

    async def complete(self, body: dict[str, Any], principal: Principal, hints: dict[str, str],
                       task_hint: str | None = None) -> Completed:
        started = time.perf_counter()
        plan = self.plan(body, principal, hints, task_hint)
        if plan.mode == "cascade":
            return await self._cascade(plan, body, principal, hints)
        a = await self.admit(plan, body, principal, hints, task_hint)
        try:
            r = await self.s.executor.execute(a.plan.candidates, a.upstream_body, a.ctx,
                                              prompt_estimate=a.plan.needs.prompt_tokens if a.plan.needs else 0)
        except GatewayError as e:
            await self._fail(a, started, e)
            raise
        usage = r.response.setdefault("usage", {})
        usage.setdefault("prompt_tokens", r.prompt_tokens)
        usage.setdefault("completion_tokens", r.completion_tokens)
        usage.setdefault("total_tokens", r.prompt_tokens + r.completion_tokens)
        usage["cost_usd"] = round(r.cost_usd, 10)
        headers = self._headers(a, r.deployment, r.attempts)
        headers["x-tiergate-cost-usd"] = f"{r.cost_usd:.10f}"
        outcome = Outcome(deployment=r.deployment, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
                          cost_usd=r.cost_usd, latency_ms=(time.perf_counter() - started) * 1000,
                          attempts=len(r.attempts), outcome="ok",
                          capability=a.plan.task.task_type if a.plan.task else None)
        return Completed(r.response, headers, self._settler(a, outcome), r.deployment, r.cost_usd)

    # --- streaming ----------------------------------------------------------------

    async def stream(self, body: dict[str, Any], principal: Principal, hints: dict[str, str]) -> Streaming:
        started = time.perf_counter()
        plan = self.plan(body, principal, hints)
        if plan.mode == "cascade":
            return self._as_stream(await self._cascade(plan, body, principal, hints), body)
        a = await self.admit(plan, body, principal, hints)
        try:
            h = await self.s.executor.open_stream(a.plan.candidates, a.upstream_body, a.ctx)
        except GatewayError as e:
            await self._fail(a, started, e)
            raise
        want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        spec = h.deployment
        prompt_est = a.plan.needs.prompt_tokens if a.plan.needs else 0
        # "text" keeps the streamed content only to estimate usage when the upstream reports none.
        state: dict[str, Any] = {"usage": None, "text": [], "outcome": "ok"}

        async def settle() -> None:
            u = state["usage"] or {}
            p = u.get("prompt_tokens", prompt_est)
            c = u["completion_tokens"] if "completion_tokens" in u else _streamed_tokens(state)
            await self._settler(a, Outcome(
                deployment=spec, prompt_tokens=p, completion_tokens=c, cost_usd=spec.cost_usd(p, c),
                latency_ms=(time.perf_counter() - started) * 1000, attempts=len(h.attempts),
                outcome=state["outcome"], capability=a.plan.task.task_type if a.plan.task else None))()

        async def chunks() -> AsyncIterator[bytes]:
            settled = False
            try:
                if h.first is not None:
                    out = self._forward(h.first, state, want_usage, spec, prompt_est)
                    if out is not None:
                        yield out
                async for chunk in h.rest:
                    out = self._forward(chunk, state, want_usage, spec, prompt_est)
                    if out is not None:
                        yield out
            except GatewayError as e:
                # Mid-stream failure: end with an error event, never silently truncated text.
                state["outcome"] = f"error:{e.code}"
                settled = True
                await settle()
                yield sse({"error": {"message": f"upstream stream interrupted: {e.message}", "type": e.type,
                                     "code": "stream_interrupted", "param": None}})
                return
            except (GeneratorExit, asyncio.CancelledError):
                if not settled:
                    # The client went away mid-stream: bill what was produced, durably.
                    state["outcome"] = "client_disconnected"
                    settled = True
                    await asyncio.shield(settle())
                raise
            if want_usage and state["usage"] is None:
                # The upstream reported no usage: send our estimate so the client still gets one.
                yield sse(self._usage_chunk(h.first, spec, prompt_est, _streamed_tokens(state)))
            # Settle before [DONE]: the client's acknowledgement means the record is durable.
            settled = True
            await settle()
            yield SSE_DONE

        return Streaming(self._headers(a, spec, h.attempts), chunks(), spec)

    # --- cascades -----------------------------------------------------------------

    async def _cascade(self, plan: RoutePlan, body: dict[str, Any], principal: Principal,
                       hints: dict[str, str]) -> Completed:
        """Delegate to the cascade runner (registered as ``services.extra['cascades']``)."""
        runner = self.s.extra.get("cascades")
        if runner is None:
            raise cascades_unavailable(plan)
        return await runner.run(plan, body, principal, hints)

    @staticmethod
    def _as_stream(done: Completed, body: dict[str, Any]) -> Streaming:
        """A cascade needs the whole answer to score it: stream the final answer as chunks."""
        r = done.response
        want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": r.get("id", "chatcmpl-tg"), "object": "chat.completion.chunk",
                "created": r.get("created", int(time.time())), "model": r.get("model", done.deployment.name)}

        async def chunks() -> AsyncIterator[bytes]:
            for i, ch in enumerate(r.get("choices") or ()):
                msg = ch.get("message") or {}
                delta = {k: v for k, v in msg.items() if v is not None}
                if delta.get("tool_calls"):
                    delta["tool_calls"] = [{**tc, "index": j} for j, tc in enumerate(delta["tool_calls"])]
                yield sse({**base, "choices": [{"index": i, "delta": delta, "finish_reason": None}]})
                yield sse({**base, "choices": [{"index": i, "delta": {}, "finish_reason": ch.get("finish_reason")}]})
            if want_usage:
                yield sse({**base, "choices": [], "usage": r.get("usage")})
            await done.settle()
            yield SSE_DONE

        return Streaming(done.headers, chunks(), done.deployment)

    @staticmethod
    def _forward(chunk: dict[str, Any], state: dict[str, Any], want_usage: bool, spec: ModelSpec,
                 prompt_est: int) -> bytes | None:
        usage = chunk.get("usage")
        if usage:
            state["usage"] = usage
            usage["cost_usd"] = round(spec.cost_usd(usage.get("prompt_tokens", prompt_est),
                                                    usage.get("completion_tokens", 0)), 10)
            if not chunk.get("choices"):
                return sse(chunk) if want_usage else None  # the usage-only final chunk
            if not want_usage:
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
        if state["usage"] is None:
            for ch in chunk.get("choices") or ():
                content = (ch.get("delta") or {}).get("content")
                if content:
                    state["text"].append(content)
        return sse(chunk)

    @staticmethod
    def _usage_chunk(first: dict[str, Any] | None, spec: ModelSpec, p: int, c: int) -> dict[str, Any]:
        base = first or {}
        return {"id": base.get("id", "chatcmpl-tg"), "object": "chat.completion.chunk",
                "created": base.get("created", int(time.time())), "model": base.get("model", spec.name),
                "choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
                                          "cost_usd": round(spec.cost_usd(p, c), 10)}}


def cascades_unavailable(plan: RoutePlan) -> NoRouteAvailable:
    return NoRouteAvailable(f"'{plan.requested}' needs the cascade engine, which is not enabled here")
