"""The request path shared by every front door: plan -> admit -> execute -> settle.

Doors (``/v1/chat/completions``, ``/generate``, ``/code``, ...) build a
:class:`~tiergate.request.GatewayRequest` and call :meth:`Gateway.handle`; they get back a
:class:`Completed` answer, a :class:`Streaming` one, or a :class:`Deferred` job, and only
render it in their own shape. The gateway settles by itself: a completed answer is
settled (the usage record durable) before :meth:`Gateway.handle` returns, so before the
client sees it; a stream settles before its last event (``[DONE]``), or when the client
leaves. Every exit after admission settles or releases its reservation exactly once.

The budget's tier ceiling (soft limit) is asked of admission before planning, so a
request is planned once; only the request whose own reservation first crosses the soft
limit is re-planned below the ceiling the reservation reported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tiergate.cache.replay import StreamCollector, hit_response, replay_chunks
from tiergate.cache.service import NO_CACHE, Lookup
from tiergate.config.catalog import ModelSpec
from tiergate.dialects import native as native_dialects
from tiergate.errors import GatewayError, NoRouteAvailable, OffloadUnavailable
from tiergate.execution.executor import AttemptRecord, CallContext, StreamHandle
from tiergate.limits.admission import AdmissionRequest, Outcome, Principal, Ticket, new_request_id
from tiergate.limits.idempotency import Hit, request_hash
from tiergate.request import GatewayRequest, ModelRef, TraceParent
from tiergate.routing.affinity import response_tool_call, session_of
from tiergate.routing.plan import RoutePlan
from tiergate.services import Services
from tiergate.tokens import content_tokens

log = logging.getLogger(__name__)

#: Output tokens assumed for the worst-case budget estimate when neither the request
#: nor the catalog bounds the answer.
FALLBACK_MAX_OUTPUT = 4096
DEFER_HEADER = "x-tiergate-defer"
#: Front door -> the OpenTelemetry GenAI operation name (every other door is "chat").
GENAI_OPERATIONS = {"embeddings": "embeddings", "completions": "text_completion"}
SSE_DONE = b"data: [DONE]\n\n"


def header_safe(text: str, limit: int = 400) -> str:
    """HTTP header values must be latin-1 without control characters; keep them ASCII,
    printable and bounded, whatever the text came from."""
    safe = text.encode("ascii", "replace").decode()
    return "".join(c if " " <= c <= "~" else "?" for c in safe)[:limit]


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
        h = {"x-request-id": self.request_id, "x-tiergate-model": header_safe(d.name),
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
            return {**kept, "x-tiergate-idempotent-replay": "true"}
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
    before it ends (or when closed early)."""

    meta: ResponseMeta
    chunks: AsyncIterator[dict[str, Any]]
    include_usage: bool
    dialect: str = "chat"

    @property
    def headers(self) -> dict[str, str]:
        return self.meta.headers()


@dataclass(frozen=True, slots=True)
class Deferred:
    """The edge queued the request (the cloud is needed and unreachable)."""

    job_id: str


@dataclass(slots=True)
class _Admitted:
    plan: RoutePlan
    ticket: Ticket
    ctx: CallContext
    started: float
    notes: list[str] = field(default_factory=list)
    #: The GenAI ``gen_ai.operation.name`` of the door (telemetry).
    operation: str = "chat"
    #: The caller's trace context: the request's span is its child (telemetry).
    trace: TraceParent | None = None

    def meta(self, spec: ModelSpec, attempts: list[AttemptRecord], cost: float | None = None) -> ResponseMeta:
        return ResponseMeta(self.ctx.request_id, spec, len(attempts), "; ".join([self.plan.reason, *self.notes]),
                            cost, dict(self.ticket.headers))


def usage_block(prompt: int, completion: int, cost_usd: float) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "cost_usd": round(cost_usd, 10)}


class Gateway:
    def __init__(self, services: Services) -> None:
        self.s = services

    # --- entry point ------------------------------------------------------------------

    async def handle(self, req: GatewayRequest, principal: Principal) -> Completed | Streaming | Deferred:
        try:
            if req.stream:
                return await self.stream(req, principal)
            return await self.complete(req, principal)
        except OffloadUnavailable:
            if self.s.deferrer is not None and req.hint(DEFER_HEADER).lower() == "allow":
                return Deferred(await self.s.deferrer.defer(req, principal))
            raise

    async def count_tokens(self, req: GatewayRequest, principal: Principal,
                           estimate: Callable[[], dict[str, Any]]) -> Completed:
        """The input tokens of ``req`` (``/v1/messages/count_tokens``): counted by the plan's
        first deployment when it speaks ``req.native``'s dialect (Anthropic's own count: an
        upstream call Anthropic does not bill), else ``estimate()`` (no upstream call).

        Admitted as a free call -- the key's requests-per-minute slot, no budget reservation
        (:attr:`AdmissionRequest.free`) -- and settled like any request: one usage record
        (operation ``count_tokens``, 0 tokens, $0) and its telemetry; the headers say who counted."""
        plan = self.plan(req, principal)
        if plan.mode == "cascade" and not plan.candidates:  # counted where the cascade starts: its first step
            assert plan.cascade_policy is not None
            first = self.s.catalog.cascades[plan.cascade_policy].targets()[0]
            ref = ModelRef.parse(first, aliases=self.s.catalog.aliases, default=first)
            plan = self.plan(dataclasses.replace(req, ref=ref), principal)
        if not plan.candidates:
            raise NoRouteAvailable(f"No deployment to count tokens for '{plan.requested}'")
        spec, started, request_id = plan.candidates[0], time.perf_counter(), new_request_id()
        ticket = await self.s.admission.admit(principal, AdmissionRequest(
            request_id=request_id, deployment=spec, prompt_tokens=req.needs.prompt_tokens, max_output_tokens=0,
            estimate_usd=0.0, free=True))
        a = _Admitted(plan, ticket, CallContext(request_id=request_id, deadline=time.monotonic()), started,
                      operation="count_tokens", trace=req.trace)
        try:
            counted = await self.s.executor.count_tokens(spec, req.native) if req.native is not None else None
        except BaseException as e:
            await self._release(a, e)
            raise
        attempts = 0 if counted is None else 1
        await asyncio.shield(self._settle(a, Outcome(
            deployment=spec, prompt_tokens=0, completion_tokens=0, cost_usd=0.0,
            latency_ms=(time.perf_counter() - started) * 1000, attempts=attempts, outcome="ok",
            operation="count_tokens")))
        how = (f"counted by {spec.name} (its own count_tokens: not billed)" if counted is not None
               else f"estimated by the gateway for {spec.name} (no upstream call)")
        meta = ResponseMeta(request_id, spec, attempts, f"{plan.reason}; {how}", 0.0, dict(ticket.headers))
        return Completed(counted if counted is not None else estimate(), meta)

    # --- planning and admission -------------------------------------------------------

    def plan(self, req: GatewayRequest, principal: Principal) -> RoutePlan:
        """The routing decision under the budget's current tier ceiling (no store access)."""
        return self.s.router.plan(req, principal, max_tier=self.s.admission.tier_ceiling(principal))

    async def planned(self, req: GatewayRequest, principal: Principal) -> tuple[RoutePlan, tuple[str, str] | None]:
        """The plan with session affinity applied: a request of a known session (or tool
        loop) goes first to the deployment that served the session's first request, while
        that deployment is usable. Returns the plan and the session to remember, if new."""
        plan = self.plan(req, principal)
        aff = self.s.affinity
        if aff is None or plan.mode != "single" or req.ref.kind == "model":
            return plan, None
        sess = session_of(req)
        if sess is None:
            return plan, None
        try:
            dep = await aff.lookup(principal.tenant, *sess)
        except Exception as e:  # affinity is an optimization: a store hiccup routes afresh
            log.warning("session affinity lookup failed: %r", e)
            return plan, None
        if dep is None:
            return plan, sess
        pinned = next((c for c in plan.candidates if c.deployment_id == dep), None) or self._usable(dep, req, principal)
        if pinned is None:
            return dataclasses.replace(plan, reason=f"{plan.reason}; session affinity: {dep} unusable now"), None
        chain = (pinned, *(c for c in plan.candidates if c.deployment_id != dep))
        return dataclasses.replace(plan, candidates=chain, tier=pinned.tier,
                                   reason=f"{plan.reason}; session affinity ({sess[0]}): stays on {dep}",
                                   extra={**plan.extra, "affinity": {"session": sess[0], "deployment": dep}}), None

    def _usable(self, deployment_id: str, req: GatewayRequest, principal: Principal) -> ModelSpec | None:
        spec = self.s.catalog.by_id.get(deployment_id)
        if spec is None or self.s.circuits.is_open(deployment_id):
            return None
        ok, _ = self.s.router.tier_candidates(spec.tier, principal, req.needs)
        return spec if any(c.deployment_id == deployment_id for c in ok) else None

    async def _remember(self, principal: Principal, sess: tuple[str, str] | None, spec: ModelSpec,
                        response: dict[str, Any] | None = None) -> None:
        aff = self.s.affinity
        if aff is None:
            return
        try:
            if sess is not None:
                await aff.remember(principal.tenant, *sess, spec.deployment_id)
            call = response_tool_call(response) if response is not None else None
            if call is not None:  # a tool loop starts here: its continuations come back to this deployment
                await aff.remember(principal.tenant, "tool", call, spec.deployment_id)
        except Exception as e:  # the answer stands; the next request of the session routes afresh
            log.warning("session affinity not stored: %r", e)

    @staticmethod
    def estimate(spec: ModelSpec, plan: RoutePlan) -> tuple[int, int, float]:
        needs = plan.needs
        assert needs is not None
        max_out = needs.max_output_tokens
        if max_out is None:  # 0 is a bound too (embeddings)
            max_out = spec.max_output_tokens or FALLBACK_MAX_OUTPUT
        return needs.prompt_tokens, max_out, spec.cost_usd(needs.prompt_tokens, max_out)

    async def _admit(self, req: GatewayRequest, principal: Principal, plan: RoutePlan) -> _Admitted:
        started = time.perf_counter()
        request_id = new_request_id()
        p, max_out, est = self.estimate(plan.candidates[0], plan)
        ticket = await self.s.admission.admit(principal, AdmissionRequest(
            request_id=request_id, deployment=plan.candidates[0], prompt_tokens=p, max_output_tokens=max_out,
            estimate_usd=est))
        notes: list[str] = []
        if ticket.max_tier is not None and plan.tier is not None and plan.tier > ticket.max_tier:
            # This reservation first crossed the soft limit: the reservation (sized for the
            # dearer model) stands and is replaced at settlement; the request goes cheaper.
            try:
                plan = self.s.router.plan(req, principal, max_tier=ticket.max_tier)
                notes.append(f"budget soft limit: downgraded to tier {plan.tier}")
            except GatewayError:
                notes.append("budget soft limit: no cheaper tier available")
        deadline = time.monotonic() + self.s.catalog.reliability.deadline_s
        return _Admitted(plan, ticket, CallContext(request_id=request_id, deadline=deadline), started, notes,
                         GENAI_OPERATIONS.get(req.door, "chat"), req.trace)

    async def _settle(self, a: _Admitted, outcome: Outcome, req: GatewayRequest | None = None) -> None:
        """Settle once (durable when it returns) and publish the request's telemetry. With
        labels collected, the request's label record is written alongside (concurrently:
        one round trip of latency)."""
        dep = outcome.deployment
        if self.s.labels is not None and dep is not None and req is not None:
            settled, labeled = await asyncio.gather(self.s.admission.settle(a.ticket, outcome), self.s.labels.record(
                a.ctx.request_id, a.ticket.principal, model=dep.name, deployment=dep.deployment_id, tier=dep.tier,
                messages=req.messages, router=a.plan.extra.get("router")), return_exceptions=True)
            if isinstance(labeled, Exception):  # a label is worth less than the answer: log, go on
                log.warning("label for %s not stored: %r", a.ctx.request_id, labeled)
            if isinstance(settled, BaseException):
                raise settled
        else:
            await self.s.admission.settle(a.ticket, outcome)
        # A failed request is reported under the deployment it was planned for.
        dep = outcome.deployment or a.plan.candidates[0]
        self.s.telemetry.emit({
            "request_id": a.ctx.request_id, "model": dep.name, "tier": dep.tier, "requested_model": a.plan.requested,
            "upstream_model": dep.wire_model, "provider": dep.model.partition("/")[0], "operation": a.operation,
            "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
            "cost_usd": outcome.cost_usd, "latency_ms": outcome.latency_ms, "ttft_ms": outcome.ttft_ms,
            "attempts": outcome.attempts, "fallback": outcome.fallback, "outcome": outcome.outcome,
            "cache_hit": outcome.cache_hit, "saved_usd": outcome.saved_usd, "task_type": outcome.capability,
            "budget_utilization_percent": a.ticket.budget_utilization_percent, **_trace_fields(a.trace),
        })

    async def _release(self, a: _Admitted, err: BaseException) -> None:
        """Settle a request that produced nothing billable (its reservation is released)."""
        attempts = err.details.get("attempts") or [] if isinstance(err, GatewayError) else []
        code = err.code if isinstance(err, GatewayError) else "internal_error"
        await asyncio.shield(self._settle(a, Outcome(
            deployment=None, prompt_tokens=0, completion_tokens=0, cost_usd=0.0,
            latency_ms=(time.perf_counter() - a.started) * 1000, attempts=len(attempts),
            outcome=f"error:{code}", capability=_capability(a.plan))))

    # --- non-streaming ------------------------------------------------------------------

    async def complete(self, req: GatewayRequest, principal: Principal) -> Completed:
        """A settled answer; with an ``Idempotency-Key``, a retry replays the first response
        instead of paying twice (a concurrent duplicate gets 409 or waits)."""
        idem = self.s.idempotency if req.idempotency_key else None
        if idem is None:
            return await self._complete(req, principal)
        assert req.idempotency_key is not None
        got = await idem.begin(principal.key_id, req.idempotency_key, request_hash(req.body))
        if isinstance(got, Hit):
            return Completed(got.body, _replay_meta(got), got.status, stored_headers=dict(got.headers),
                             dialect=dialect_of(got.body))
        try:
            done = await self._complete(req, principal)
        except BaseException:
            await idem.fail(got)
            raise
        await idem.complete(got, done.status, done.response, done.headers)
        return done

    async def _complete(self, req: GatewayRequest, principal: Principal) -> Completed:
        plan, sess = await self.planned(req, principal)
        look = await self._cache_lookup(req, principal, plan)
        if look.hit:
            return await self._cache_hit(look, plan, principal, req.trace)
        if plan.mode == "cascade":
            return await self._keep(look, await self._cascade(req, principal, plan))
        a = await self._admit(req, principal, plan)
        try:
            r = await self.s.executor.execute(a.plan.candidates, req.upstream, a.ctx,
                                              prompt_estimate=req.needs.prompt_tokens, operation=req.operation,
                                              native=req.native)
        except BaseException as e:
            await self._release(a, e)
            raise
        usage = r.response.setdefault("usage", {})
        if r.dialect == "chat":
            usage.setdefault("prompt_tokens", r.prompt_tokens)
            usage.setdefault("completion_tokens", r.completion_tokens)
            usage.setdefault("total_tokens", r.prompt_tokens + r.completion_tokens)
        elif r.dialect == "embeddings":
            usage.setdefault("prompt_tokens", r.prompt_tokens)
            usage.setdefault("total_tokens", r.prompt_tokens)
        usage["cost_usd"] = round(r.cost_usd, 10)
        await asyncio.shield(self._settle(a, Outcome(
            deployment=r.deployment, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
            cost_usd=r.cost_usd, latency_ms=(time.perf_counter() - a.started) * 1000, attempts=len(r.attempts),
            outcome="ok", capability=_capability(a.plan),
            fallback=r.deployment.deployment_id != a.plan.candidates[0].deployment_id), req))
        await self._remember(principal, sess, r.deployment, r.response)
        return await self._keep(look, Completed(r.response, a.meta(r.deployment, r.attempts, r.cost_usd),
                                                dialect=r.dialect))

    # --- streaming ----------------------------------------------------------------------

    async def stream(self, req: GatewayRequest, principal: Principal) -> Streaming:
        plan, sess = await self.planned(req, principal)
        look = await self._cache_lookup(req, principal, plan)
        if look.hit:
            return _as_stream(await self._cache_hit(look, plan, principal, req.trace), req.include_usage)
        if plan.mode == "cascade":
            return _as_stream(await self._keep(look, await self._cascade(req, principal, plan)), req.include_usage)
        a = await self._admit(req, principal, plan)
        try:
            h = await self.s.executor.open_stream(a.plan.candidates, req.upstream, a.ctx, native=req.native)
        except BaseException as e:
            await self._release(a, e)
            raise
        await self._remember(principal, sess, h.deployment)
        ttft_ms = (time.perf_counter() - a.started) * 1000  # the handle holds the first chunk
        meta = a.meta(h.deployment, h.attempts)
        meta.cache = look
        if h.dialect != "chat":  # a native stream is relayed as is, and never cached
            return Streaming(meta, self._native_events(a, h, req, ttft_ms), True, h.dialect)
        chunks = self._chunks(a, h, req, ttft_ms)
        if look.storable:
            chunks = self._keep_stream(look, chunks, h.deployment)
        return Streaming(meta, chunks, req.include_usage)


    async def _chunks(self, a: _Admitted, h: StreamHandle, req: GatewayRequest,
                      ttft_ms: float) -> AsyncIterator[dict[str, Any]]:
        """Forward the upstream's chunks; cost goes into the usage chunk; settle before the end."""
        spec, prompt_est = h.deployment, req.needs.prompt_tokens
        usage: dict[str, Any] | None = None
        text: list[str] = []  # only to estimate usage when the upstream reports none
        first, last = h.first, None

        async def settle(outcome: str) -> None:
            u = usage or {}
            p = u.get("prompt_tokens", prompt_est)
            c = u["completion_tokens"] if "completion_tokens" in u else content_tokens("".join(text))
            await asyncio.shield(self._settle(a, Outcome(
                deployment=spec, prompt_tokens=p, completion_tokens=c, cost_usd=spec.cost_usd(p, c),
                latency_ms=(time.perf_counter() - a.started) * 1000, attempts=len(h.attempts), outcome=outcome,
                capability=_capability(a.plan), ttft_ms=ttft_ms,
                fallback=spec.deployment_id != a.plan.candidates[0].deployment_id), req))

        settled = False
        try:
            pending = [first] if first is not None else []
            while True:
                if pending:
                    chunk = pending.pop()
                else:
                    try:
                        chunk = await h.rest.__anext__()
                    except StopAsyncIteration:
                        break
                last = chunk
                u = chunk.get("usage")
                if u:
                    usage = u
                    u["cost_usd"] = round(spec.cost_usd(u.get("prompt_tokens", prompt_est),
                                                        u.get("completion_tokens", 0)), 10)
                elif usage is None:
                    for ch in chunk.get("choices") or ():
                        content = (ch.get("delta") or {}).get("content")
                        if content:
                            text.append(content)
                yield chunk
        except GatewayError as e:
            # Mid-stream failure: bill what was produced, end with an error event.
            settled = True
            await settle(f"error:{e.code}")
            raise
        except BaseException:
            if not settled:
                # The client went away (or the stream was closed early): bill what was produced.
                settled = True
                await settle("client_disconnected")
            raise
        if usage is None:
            # The upstream reported no usage: send our estimate so the client still gets one.
            c = content_tokens("".join(text))
            base = first or last or {}
            yield {"id": base.get("id", "chatcmpl-tg"), "object": "chat.completion.chunk",
                   "created": base.get("created", int(time.time())), "model": base.get("model", spec.name),
                   "choices": [], "usage": usage_block(prompt_est, c, spec.cost_usd(prompt_est, c))}
        # Settle before the end: the client's last event means the record is durable.
        settled = True
        await settle("ok")

    async def _native_events(self, a: _Admitted, h: StreamHandle, req: GatewayRequest,
                             ttft_ms: float) -> AsyncIterator[dict[str, Any]]:
        """Forward a native deployment's events unchanged; usage comes from the events that
        report it (:mod:`tiergate.dialects.native`); settle before the last event goes out."""
        spec, prompt_est, dialect = h.deployment, req.needs.prompt_tokens, h.dialect
        final = native_dialects.FINAL_EVENTS[dialect]
        p: int | None = None
        c: int | None = None
        text: list[str] = []  # only to estimate usage when the upstream reports none

        async def settle(outcome: str) -> None:
            pt = prompt_est if p is None else p
            ct = content_tokens("".join(text)) if c is None else c
            await asyncio.shield(self._settle(a, Outcome(
                deployment=spec, prompt_tokens=pt, completion_tokens=ct, cost_usd=spec.cost_usd(pt, ct),
                latency_ms=(time.perf_counter() - a.started) * 1000, attempts=len(h.attempts), outcome=outcome,
                capability=_capability(a.plan), ttft_ms=ttft_ms,
                fallback=spec.deployment_id != a.plan.candidates[0].deployment_id), req))

        pending = [h.first] if h.first is not None else []
        held: dict[str, Any] | None = None  # message_stop waits for the settlement
        try:
            while True:
                if pending:
                    event = pending.pop()
                else:
                    try:
                        event = await h.rest.__anext__()
                    except StopAsyncIteration:
                        break
                up, uc = native_dialects.event_usage(dialect, event)
                p, c = up or p, uc if uc is not None else c
                if c is None:
                    text.append(native_dialects.event_text(dialect, event))
                if event.get("type") in final:
                    held = event
                    continue
                yield event
        except GatewayError as e:
            await settle(f"error:{e.code}")
            raise
        except BaseException:
            await settle("client_disconnected")
            raise
        await settle("ok")
        if held is not None:
            yield held

    # --- the cache step (tiergate.cache) -------------------------------------------------

    async def _cache_lookup(self, req: GatewayRequest, principal: Principal, plan: RoutePlan) -> Lookup:
        cache = self.s.cache
        return NO_CACHE if cache is None else await cache.lookup(req, principal, plan)

    async def _cache_hit(self, look: Lookup, plan: RoutePlan, principal: Principal,
                         trace: TraceParent | None = None) -> Completed:
        """A hit costs nothing and takes no reservation (nor a rate-limit slot: it uses no
        upstream capacity); it is still a request of this key, recorded as one."""
        assert look.entry is not None and look.deployment is not None
        started, request_id, spec = time.perf_counter(), new_request_id(), look.deployment
        response = hit_response(look.entry.response, request_id, look.entry.cost_usd)
        usage = response.get("usage") or {}
        ticket = Ticket(request_id=request_id, principal=principal, deployment=spec, reserved_usd=0.0,
                        reserved_tokens=0)
        a = _Admitted(plan, ticket, CallContext(request_id=request_id, deadline=time.monotonic()), started,
                      trace=trace)
        await asyncio.shield(self._settle(a, Outcome(
            deployment=spec, prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0), cost_usd=0.0,
            latency_ms=(time.perf_counter() - started) * 1000, attempts=0, outcome="cache_hit", cache_hit=True,
            saved_usd=look.entry.cost_usd, capability=_capability(plan))))
        similar = f" (similarity {look.similarity:.3f})" if look.similarity is not None else ""
        meta = ResponseMeta(request_id, spec, 0, f"cache {look.status}{similar}: answered by {spec.name} "
                            f"{int(look.age_s or 0)}s ago", 0.0, cache=look)
        return Completed(response, meta)

    async def _keep(self, look: Lookup, done: Completed) -> Completed:
        """Store a fresh non-streamed answer (when the lookup says it may be kept)."""
        # A native-dialect answer (an Anthropic or Responses body) is not a chat completion: not kept.
        if look.storable and self.s.cache is not None and done.status == 200 and done.dialect == "chat":
            await self.s.cache.keep(look, done.response, done.deployment, done.cost_usd)
        done.meta.cache = look
        return done

    async def _keep_stream(self, look: Lookup, chunks: AsyncIterator[dict[str, Any]], spec: ModelSpec
                           ) -> AsyncIterator[dict[str, Any]]:
        """Forward a stream; store the answer it assembled only once it completed (the inner
        generator settled). A stream that failed or lost its client is not stored."""
        collected = StreamCollector()
        try:
            async for chunk in chunks:
                collected.add(chunk)
                yield chunk
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        if collected.complete and self.s.cache is not None:
            answer = collected.completion()
            await self.s.cache.keep(look, answer, spec, float((answer.get("usage") or {}).get("cost_usd") or 0.0))

    # --- cascades -----------------------------------------------------------------------

    async def _cascade(self, req: GatewayRequest, principal: Principal, plan: RoutePlan) -> Completed:
        runner = self.s.cascades
        if runner is None:
            raise NoRouteAvailable(f"'{plan.requested}' needs the cascade engine, which is not enabled here")
        started = time.perf_counter()
        request_id = new_request_id()
        r = await runner.run(req, principal, policy_name=plan.cascade_policy, request_id=request_id,
                             max_tier=self.s.admission.tier_ceiling(principal))
        r.response.setdefault("id", request_id)
        meta = ResponseMeta(request_id, r.deployment, r.attempts, f"{plan.reason}; {r.stop_reason}", r.cost_usd,
                            cascade=r.header_value)
        if self.s.labels is not None:
            # Every step was settled as it ran; the steps' scores (and judge verdicts) become labels.
            try:
                await asyncio.shield(self.s.labels.record(
                    request_id, principal, model=r.deployment.name, deployment=r.deployment.deployment_id,
                    tier=r.deployment.tier, messages=req.messages, router=plan.extra.get("router"), steps=r.steps))
            except Exception as e:  # a label is worth less than the answer: log, go on
                log.warning("label for %s not stored: %r", request_id, e)
        # Every step was settled as it finished; only the request's telemetry is left.
        dep = r.deployment
        u = r.response.get("usage") or {}  # summed over every step's call
        self.s.telemetry.emit({"request_id": request_id, "model": dep.name, "tier": dep.tier,
                               "requested_model": plan.requested, "upstream_model": dep.wire_model,
                               "provider": dep.model.partition("/")[0], "operation": "chat",
                               "prompt_tokens": u.get("prompt_tokens"), "completion_tokens": u.get("completion_tokens"),
                               "cost_usd": r.cost_usd, "latency_ms": (time.perf_counter() - started) * 1000,
                               "attempts": r.attempts,
                               "cascade_policy": plan.cascade_policy, "cascade_steps": len(r.steps),
                               "outcome": "ok", "task_type": _capability(plan), **_trace_fields(req.trace)})
        return Completed(r.response, meta)


def _trace_fields(trace: TraceParent | None) -> dict[str, str]:
    return {} if trace is None else {"traceparent": trace.traceparent, "tracestate": trace.tracestate}


def _capability(plan: RoutePlan) -> str | None:
    return plan.task.task_type if plan.task else None


def _replay_meta(hit: Hit) -> ResponseMeta:
    # A replay's headers are the stored ones (Completed.stored_headers); the meta is a stub.
    from tiergate.config.catalog import ModelSpec as _Spec

    spec = _Spec(name=hit.headers.get("x-tiergate-model", "replay"), model="replay", id="replay", tier=0)
    return ResponseMeta(hit.headers.get("x-request-id", "replay"), spec, 0, "idempotent replay", replay=True)


def _as_stream(done: Completed, include_usage: bool) -> Streaming:
    """A cascade needs the whole answer to score it, and a cache hit has it already: stream
    the final answer as chunks (the same shape as a live stream's, usage chunk last)."""
    r = done.response

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        for chunk in replay_chunks(r, done.deployment.name):
            yield chunk

    return Streaming(done.meta, chunks(), include_usage)
