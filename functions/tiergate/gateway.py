"""The request path shared by every front door: plan -> admit -> execute -> settle.

Doors (``/v1/chat/completions``, ``/generate``, ``/code``, ...) build a
:class:`~tiergate.request.GatewayRequest` and call :meth:`Gateway.handle`; they get back a
:class:`Completed` answer, a :class:`Streaming` one, or a :class:`Deferred` job, and only
render it in their own shape. The gateway settles by itself: a completed answer is
settled (the usage record durable) before :meth:`Gateway.handle` returns, so before the
client sees it; a stream settles before its last event (``[DONE]``), or when the client
leaves -- also when it leaves before the stream was ever iterated. Every exit after
admission settles or releases its reservation exactly once, by what may have been
billed (:mod:`tiergate.execution.billing`): released when no provider was called,
charged at the reservation when an attempt's outcome is unknown, otherwise at the
actual usage. A retry after an unknown outcome first reserves its own worst case.

The budget's tier ceiling (soft limit) is asked of admission before planning, so a
request is planned once; only the request whose own reservation first crosses the soft
limit is re-planned below the ceiling the reservation reported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from tiergate.config.budgets import BudgetsConfig
from tiergate.config.catalog import ModelSpec
from tiergate.dialects import native as native_dialects
from tiergate.errors import GatewayError, NoRouteAvailable, OffloadUnavailable
from tiergate.execution.billing import Verdict, request_verdict
from tiergate.execution.executor import AttemptRecord, CallContext, ExecResult, StreamHandle, tried
from tiergate.limits.admission import AdmissionRequest, Outcome, Principal, Ticket, new_request_id
from tiergate.limits.estimate import MIN_ANSWER_TOKENS, affordable_output, cap_output, reserve_prompt
from tiergate.limits.idempotency import Hit, request_hash
from tiergate.request import GatewayRequest
from tiergate.routing.plan import RoutePlan
from tiergate.services import Services
from tiergate.tokens import content_tokens

#: Output tokens assumed for the worst-case budget estimate when neither the request
#: nor the catalog bounds the answer.
FALLBACK_MAX_OUTPUT = 4096
DEFER_HEADER = "x-tiergate-defer"
_NO_BUDGETS = BudgetsConfig()
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
            return {**safe_headers(self.stored_headers), "x-tiergate-idempotent-replay": "true"}
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

    @property
    def headers(self) -> dict[str, str]:
        return self.meta.headers()

    async def aclose(self) -> None:
        aclose = getattr(self.chunks, "aclose", None)
        if aclose is not None:
            await aclose()


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
    principal: Principal
    #: Prompt tokens the reservation covers (the estimate plus its margin).
    prompt_reserved: int
    notes: list[str] = field(default_factory=list)
    #: Reservations for retries after an attempt with an unknown outcome (one each).
    extra: list[Ticket] = field(default_factory=list)

    @property
    def tickets(self) -> list[Ticket]:
        return [self.ticket, *self.extra]

    def meta(self, spec: ModelSpec, attempts: list[AttemptRecord], cost: float | None = None) -> ResponseMeta:
        return ResponseMeta(self.ctx.request_id, spec, tried(attempts), "; ".join([self.plan.reason, *self.notes]),
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

    async def count_tokens(self, req: GatewayRequest, principal: Principal) -> dict[str, Any] | None:
        """A native deployment's own token count of ``req.native`` (free: not admitted, not
        billed) when the plan's first deployment speaks that dialect; else None."""
        plan = self.plan(req, principal)
        if req.native is None or not plan.candidates:
            return None
        return await self.s.executor.count_tokens(plan.candidates[0], req.native)

    # --- planning and admission -------------------------------------------------------

    def plan(self, req: GatewayRequest, principal: Principal) -> RoutePlan:
        """The routing decision under the budget's current tier ceiling (no store access)."""
        return self.s.router.plan(req, principal, max_tier=self.s.admission.tier_ceiling(principal))

    @staticmethod
    def estimate(spec: ModelSpec, plan: RoutePlan, budgets: BudgetsConfig | None = None) -> tuple[int, int, float]:
        """(prompt tokens reserved, answer tokens reserved, worst-case cost) on ``spec``:
        the prompt with the estimate's margin (:mod:`tiergate.limits.estimate`)."""
        needs = plan.needs
        assert needs is not None
        cfg = budgets or _NO_BUDGETS
        p = reserve_prompt(needs.prompt_tokens, cfg.prompt_margin, cfg.prompt_margin_tokens)
        max_out = needs.max_output_tokens
        if max_out is None:  # 0 is a bound too (embeddings)
            max_out = spec.max_output_tokens or FALLBACK_MAX_OUTPUT
        return p, max_out, spec.cost_usd(p, max_out)

    async def _admit(self, req: GatewayRequest, principal: Principal, plan: RoutePlan) -> _Admitted:
        started = time.perf_counter()
        request_id = new_request_id()
        budgets = self.s.catalog.budgets
        p, max_out, est = self.estimate(plan.candidates[0], plan, budgets)
        ticket = await self.s.admission.admit(principal, AdmissionRequest(
            request_id=request_id, deployment=plan.candidates[0], prompt_tokens=p, max_output_tokens=max_out,
            estimate_usd=est))
        deadline = time.monotonic() + self.s.catalog.reliability.deadline_s
        a = _Admitted(plan, ticket, CallContext(request_id=request_id, deadline=deadline), started, principal, p)
        try:
            if ticket.max_tier is not None and plan.tier is not None and plan.tier > ticket.max_tier:
                # This reservation first crossed the soft limit: the reservation (sized for the
                # dearer model) stands and is replaced at settlement; the request goes cheaper.
                try:
                    a.plan = self.s.router.plan(req, principal, max_tier=ticket.max_tier)
                    a.notes.append(f"budget soft limit: downgraded to tier {a.plan.tier}")
                except GatewayError:
                    a.notes.append("budget soft limit: no cheaper tier available")
        except BaseException as e:
            await self._fail(a, e)  # nothing was called yet: the reservation is released
            raise

        async def prepare(spec: ModelSpec, body: dict[str, Any], attempts: list[AttemptRecord]
                          ) -> dict[str, Any] | None:
            # A retry after an unknown outcome reserves its own worst case first (the first
            # reservation stands for the attempt that may have been billed).
            if sum(r.unknown for r in attempts) >= len(a.tickets):
                p2, out2, est2 = self.estimate(spec, a.plan, budgets)
                a.extra.append(await self.s.admission.admit(principal, AdmissionRequest(
                    request_id=request_id, deployment=spec, prompt_tokens=p2, max_output_tokens=out2,
                    estimate_usd=est2)))
            if req.operation != "chat":
                return body  # an embeddings body has no answer to cap
            cap = affordable_output(spec, a.tickets[-1].reserved_usd, a.prompt_reserved)
            if cap is not None and cap < min(MIN_ANSWER_TOKENS, a.plan.needs.max_output_tokens or MIN_ANSWER_TOKENS):
                return None  # on this deployment the reservation would not cover an answer worth having
            return cap_output(body, cap, spec.max_output_tokens)

        a.ctx.prepare = prepare
        return a

    async def _settle(self, a: _Admitted, outcome: Outcome, ticket: Ticket | None = None) -> None:
        """Settle once (durable when it returns) and publish the request's telemetry."""
        t = ticket or a.ticket
        await self.s.admission.settle(t, outcome)
        dep = outcome.deployment
        self.s.telemetry.emit({
            "request_id": a.ctx.request_id, "model": dep.name if dep else None, "tier": dep.tier if dep else None,
            "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
            "cost_usd": t.reserved_usd if outcome.charge_reservation else outcome.cost_usd,
            "latency_ms": outcome.latency_ms, "attempts": outcome.attempts,
            "outcome": outcome.outcome, "cache_hit": outcome.cache_hit,
            "budget_utilization_percent": t.budget_utilization_percent,
        })

    async def _settle_all(self, a: _Admitted, final: Outcome | None, verdict: Verdict) -> None:
        """Settle every reservation of the request: one per attempt whose outcome is unknown
        (charged at its reservation), then the last with ``final`` (the answer, or a known
        error). Shielded: a cancelled request still settles."""
        latency = (time.perf_counter() - a.started) * 1000
        unknown = [r for r in a.ctx.attempts if r.unknown]
        if a.ctx.in_flight:
            unknown.append(AttemptRecord("?", verdict.code, latency))
        for i, t in enumerate(a.tickets):
            if i < len(unknown) and (final is None or i < len(a.tickets) - 1):
                oc = Outcome(deployment=t.deployment, prompt_tokens=t.reserved_tokens, completion_tokens=0,
                             cost_usd=t.reserved_usd, latency_ms=latency, attempts=tried(a.ctx.attempts),
                             outcome=f"unknown:{unknown[i].outcome}", capability=_capability(a.plan),
                             charge_reservation=True)
            elif final is not None:
                oc = final
            else:
                oc = Outcome(deployment=None, prompt_tokens=0, completion_tokens=0, cost_usd=0.0, latency_ms=latency,
                             attempts=tried(a.ctx.attempts), outcome=f"error:{verdict.code}",
                             capability=_capability(a.plan), upstream_called=verdict.upstream_called)
            await asyncio.shield(self._settle(a, oc, t))

    async def _fail(self, a: _Admitted, err: BaseException) -> None:
        """Settle a request that ended in ``err``: released if no provider was called,
        charged at the reservation for each attempt whose outcome is unknown."""
        verdict = request_verdict(err, a.ctx.attempts, a.ctx.in_flight)
        await self._settle_all(a, None, verdict)

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
            async with idem.keep(got):  # the lease lives while this request does
                done = await self._complete(req, principal)
        except BaseException:
            await idem.fail(got)
            raise
        await idem.complete(got, done.status, done.response, done.headers)
        return done

    async def _complete(self, req: GatewayRequest, principal: Principal) -> Completed:
        plan = self.plan(req, principal)
        if plan.mode == "cascade":
            return await self._cascade(req, principal, plan)
        a = await self._admit(req, principal, plan)
        try:
            r = await self.s.executor.execute(a.plan.candidates, req.upstream, a.ctx,
                                              prompt_estimate=req.needs.prompt_tokens, operation=req.operation,
                                              native=req.native)
        except BaseException as e:
            await self._fail(a, e)
            raise
        ok = Outcome(deployment=r.deployment, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
                     cost_usd=r.cost_usd, latency_ms=(time.perf_counter() - a.started) * 1000,
                     attempts=tried(r.attempts), outcome="ok", capability=_capability(a.plan))
        verdict = request_verdict(None, a.ctx.attempts, False)
        try:
            done = self._completed(a, r)
        except BaseException:
            # The provider answered (and bills it) but we could not render it: still charged.
            await self._settle_all(a, dataclasses.replace(ok, outcome="error:internal_error"), verdict)
            raise
        await self._settle_all(a, ok, verdict)
        return done

    def _completed(self, a: _Admitted, r: ExecResult) -> Completed:
        usage = r.response["usage"]  # a dict: the executor makes sure
        if r.dialect == "chat":
            usage.setdefault("prompt_tokens", r.prompt_tokens)
            usage.setdefault("completion_tokens", r.completion_tokens)
            usage.setdefault("total_tokens", r.prompt_tokens + r.completion_tokens)
        elif r.dialect == "embeddings":
            usage.setdefault("prompt_tokens", r.prompt_tokens)
            usage.setdefault("total_tokens", r.prompt_tokens)
        usage["cost_usd"] = round(r.cost_usd, 10)
        return Completed(r.response, a.meta(r.deployment, r.attempts, r.cost_usd), dialect=r.dialect)

    # --- streaming ----------------------------------------------------------------------

    async def stream(self, req: GatewayRequest, principal: Principal) -> Streaming:
        plan = self.plan(req, principal)
        if plan.mode == "cascade":
            return _as_stream(await self._cascade(req, principal, plan), req.include_usage)
        a = await self._admit(req, principal, plan)
        try:
            h = await self.s.executor.open_stream(a.plan.candidates, req.upstream, a.ctx, native=req.native)
        except BaseException as e:
            await self._fail(a, e)
            raise
        run = _StreamRun(self, a, h, req)
        include_usage = req.include_usage if h.dialect == "chat" else True
        return Streaming(a.meta(h.deployment, h.attempts), run, include_usage, h.dialect)

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
        # Every step was settled as it finished; only the request's telemetry is left.
        self.s.telemetry.emit({"request_id": request_id, "model": r.deployment.name, "tier": r.deployment.tier,
                               "cost_usd": r.cost_usd, "latency_ms": (time.perf_counter() - started) * 1000,
                               "cascade_steps": len(r.steps), "outcome": "ok"})
        return Completed(r.response, meta)


class _StreamRun:
    """One streamed answer: forwards the upstream's chunks (cost in the usage chunk) -- or,
    from a native deployment, its events unchanged (usage from the events that report it,
    :mod:`tiergate.dialects.native`) -- and settles exactly once: before the end (before
    a native stream's final event), on a mid-stream failure, when the client leaves, and
    also when it is closed before it was ever iterated (an async generator that never
    started runs no ``finally``, so this is a class)."""

    def __init__(self, gw: Gateway, a: _Admitted, h: StreamHandle, req: GatewayRequest) -> None:
        self.gw, self.a, self.h = gw, a, h
        self.spec = h.deployment
        self.dialect = h.dialect
        self.prompt_est = req.needs.prompt_tokens
        self.usage: dict[str, Any] | None = None          # chat: the usage chunk's
        self.p: int | None = None                          # native: tokens the events reported
        self.c: int | None = None
        self.text: list[str] = []  # only to estimate usage when the upstream reports none
        self.settled = False
        self._judged = False
        self._gen = self._chunks() if self.dialect == "chat" else self._native()

    def __aiter__(self) -> _StreamRun:
        return self

    def __anext__(self) -> Any:
        return self._gen.__anext__()

    async def aclose(self) -> None:
        try:
            await self._gen.aclose()
        finally:
            self._verdict(None)
            if not self.settled:
                # Closed before the first step: the first chunk was produced and is billed.
                if self.h.first is not None:
                    self._count(self.h.first)
                await self._settle("client_disconnected")
            await _close(self.h.rest)

    def _verdict(self, ok: bool | None) -> None:
        """The circuit's verdict, once the stream has ended (None: no verdict)."""
        if self._judged:
            return
        self._judged = True
        circuits, did = self.gw.s.circuits, self.spec.deployment_id
        if ok is True:
            circuits.record_success(did)
        elif ok is False:
            circuits.record_failure(did)
        else:
            circuits.release(did)

    def _count(self, chunk: dict[str, Any]) -> None:
        if self.dialect != "chat":
            up, uc = native_dialects.event_usage(self.dialect, chunk)
            self.p, self.c = up or self.p, uc if uc is not None else self.c
            if self.c is None:
                self.text.append(native_dialects.event_text(self.dialect, chunk))
            return
        u = chunk.get("usage")
        if u:
            self.usage = u
            u["cost_usd"] = round(self.spec.cost_usd(u.get("prompt_tokens", self.prompt_est),
                                                     u.get("completion_tokens", 0)), 10)
        elif self.usage is None:
            for ch in chunk.get("choices") or ():
                content = (ch.get("delta") or {}).get("content")
                if content:
                    self.text.append(content)

    def _tokens(self) -> tuple[int, int]:
        if self.dialect != "chat":
            return (self.prompt_est if self.p is None else self.p,
                    content_tokens("".join(self.text)) if self.c is None else self.c)
        u = self.usage or {}
        return (u.get("prompt_tokens", self.prompt_est),
                u["completion_tokens"] if "completion_tokens" in u else content_tokens("".join(self.text)))

    async def _settle(self, outcome: str) -> None:
        if self.settled:
            return
        self.settled = True
        p, c = self._tokens()
        a = self.a
        await self.gw._settle_all(a, Outcome(
            deployment=self.spec, prompt_tokens=p, completion_tokens=c, cost_usd=self.spec.cost_usd(p, c),
            latency_ms=(time.perf_counter() - a.started) * 1000, attempts=tried(self.h.attempts), outcome=outcome,
            capability=_capability(a.plan)), request_verdict(None, self.h.attempts, False))

    async def _upstream(self) -> AsyncIterator[dict[str, Any]]:
        """The upstream's chunks (first one included), counted; failures judged and settled."""
        h = self.h
        try:
            pending = [h.first] if h.first is not None else []
            while True:
                if pending:
                    chunk = pending.pop()
                else:
                    try:
                        chunk = await h.rest.__anext__()
                    except StopAsyncIteration:
                        break
                self._count(chunk)
                yield chunk
        except GatewayError as e:
            # Mid-stream failure: bill what was produced, end with an error event. The
            # deployment failed after its first byte: that counts against its circuit.
            self._verdict(False if e.counts_against_deployment else None)
            await self._settle(f"error:{e.code}")
            raise
        except BaseException:
            # The client went away (or the stream was closed early): bill what was produced.
            self._verdict(None)
            await self._settle("client_disconnected")
            raise
        finally:
            await _close(h.rest)
        self._verdict(True)

    async def _chunks(self) -> AsyncIterator[dict[str, Any]]:
        spec, first, last = self.spec, self.h.first, None
        up = self._upstream()
        try:
            async for chunk in up:
                last = chunk
                yield chunk
        finally:
            await up.aclose()
        if self.usage is None:
            # The upstream reported no usage: send our estimate so the client still gets one.
            c = content_tokens("".join(self.text))
            base = first or last or {}
            yield {"id": base.get("id", "chatcmpl-tg"), "object": "chat.completion.chunk",
                   "created": base.get("created", int(time.time())), "model": base.get("model", spec.name),
                   "choices": [], "usage": usage_block(self.prompt_est, c, spec.cost_usd(self.prompt_est, c))}
        # Settle before the end: the client's last event means the record is durable.
        await self._settle("ok")

    async def _native(self) -> AsyncIterator[dict[str, Any]]:
        final = native_dialects.FINAL_EVENTS[self.dialect]
        held: dict[str, Any] | None = None  # the final event waits for the settlement
        up = self._upstream()
        try:
            async for event in up:
                if event.get("type") in final:
                    held = event
                    continue
                yield event
        finally:
            await up.aclose()
        await self._settle("ok")
        if held is not None:
            yield held


async def _close(it: Any) -> None:
    """Close an upstream iterator (its connection goes back to the pool); never raises."""
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # a broken upstream stream may fail to close; it is released anyway
            pass


def _capability(plan: RoutePlan) -> str | None:
    return plan.task.task_type if plan.task else None


def _replay_meta(hit: Hit) -> ResponseMeta:
    # A replay's headers are the stored ones (Completed.stored_headers); the meta is a stub.
    from tiergate.config.catalog import ModelSpec as _Spec

    spec = _Spec(name=hit.headers.get("x-tiergate-model", "replay"), model="replay", id="replay", tier=0)
    return ResponseMeta(hit.headers.get("x-request-id", "replay"), spec, 0, "idempotent replay", replay=True)


def _as_stream(done: Completed, include_usage: bool) -> Streaming:
    """A cascade needs the whole answer to score it: stream the final answer as chunks."""
    r = done.response

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        base = {"id": r.get("id", "chatcmpl-tg"), "object": "chat.completion.chunk",
                "created": r.get("created", int(time.time())), "model": r.get("model", done.deployment.name)}
        for i, ch in enumerate(r.get("choices") or ()):
            msg = ch.get("message") or {}
            delta = {k: v for k, v in msg.items() if v is not None}
            if delta.get("tool_calls"):
                delta["tool_calls"] = [{**tc, "index": j} for j, tc in enumerate(delta["tool_calls"])]
            yield {**base, "choices": [{"index": i, "delta": delta, "finish_reason": None}]}
            yield {**base, "choices": [{"index": i, "delta": {}, "finish_reason": ch.get("finish_reason")}]}
        yield {**base, "choices": [], "usage": r.get("usage")}

    return Streaming(done.meta, chunks(), include_usage)
